"""`heartrisk doctor [--repair]`: check every table, the leases and the champions; repair what is safe.

What it looks for, and what ``--repair`` does about it:

* a key stored more than once (a race before issue 15, a copy made by hand): ``--repair`` keeps the
  first row per key, in one commit per table, under the table's maintenance lease;
* data files no commit knows, older than an hour (a writer killed between its files and its commit):
  ``--repair`` deletes those files (no commit: the table never referenced them);
* a data file the latest version needs is missing (deleted by hand, a lost disk), or a file cannot be
  read: reported only, with the file's name (it must come back from a backup; dropping it from the
  table would lose its rows for good);
* the stored schema differs from the feature group's: reported only (a wrong schema needs a person);
* a lease past its expiry that nobody gave back (its holder crashed): ``--repair`` marks it released;
* a champion (classifier or synthesizer) whose artifacts are gone: reported with the command that
  moves the alias.

Every repair is safe to run beside the jobs and the servers: a duplicate is removed by a conflict-checked
commit that is redone if another writer won the race, and an orphan file younger than an hour is left
alone (it may be a commit in progress).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa
from deltalake.exceptions import DeltaError

from heartrisk.config import Settings
from heartrisk.errors import first_line
from heartrisk.store.groups import GROUPS, open_group
from heartrisk.store.lease import clear_expired, read_leases
from heartrisk.store.objects import open_objects
from heartrisk.store.table import FeatureGroup, StoreError
from heartrisk.tracking import champion_files

#: Orphan files younger than this may belong to a commit in progress and are left alone.
ORPHAN_MIN_AGE_HOURS = 1
#: What a read of a damaged table raises (reported as a finding, never a traceback).
UNREADABLE = (StoreError, DeltaError, OSError, pa.ArrowException)


@dataclass(frozen=True)
class Finding:
    """One problem: where, what, and what the repair did (None: not repaired)."""

    where: str
    problem: str
    repaired: str | None = None

    def line(self) -> str:
        fix = f" -> repaired: {self.repaired}" if self.repaired else ""
        return f"{self.where}: {self.problem}{fix}"


@dataclass(frozen=True)
class DoctorResult:
    """Every finding and what was checked."""

    findings: tuple[Finding, ...]
    checked: tuple[str, ...] = field(default=())
    repair: bool = False

    @property
    def unresolved(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.repaired)

    @property
    def summary(self) -> str:
        if not self.findings:
            return f"all healthy: {', '.join(self.checked)}"
        fixed = len(self.findings) - len(self.unresolved)
        return (f"{len(self.findings)} problem(s)" + (f", {fixed} repaired" if self.repair else "")
                + (f", {len(self.unresolved)} left" if self.unresolved else ""))


def doctor(settings: Settings, repair: bool = False) -> DoctorResult:
    """Run every check (see the module docstring); with ``repair`` fix what is safe to fix."""
    findings: list[Finding] = []
    checked: list[str] = []
    for spec in GROUPS:
        group = open_group(settings, spec)
        if not group.exists():
            continue
        checked.append(spec.table_name)
        findings += _table(group, repair)
    checked.append("leases")
    findings += _leases(settings, repair)
    checked.append("champions")
    findings += _champions(settings)
    return DoctorResult(tuple(findings), tuple(checked), repair)


def _table(group: FeatureGroup, repair: bool) -> list[Finding]:
    name = group.spec.table_name
    found = _missing(group)
    if not found:  # the checks of the rows read every file
        found += _rows(group, repair)
    orphans = group.orphan_files(ORPHAN_MIN_AGE_HOURS)
    if orphans:
        fixed = f"{group.remove_files(orphans)} file(s) deleted" if repair else None
        found.append(Finding(name, f"{len(orphans)} data file(s) older than {ORPHAN_MIN_AGE_HOURS:g} h "
                                   "that no commit knows (rows without a commit)", fixed))
    found += [Finding(name, f"schema drift: {problem}") for problem in group.schema_drift()]
    return found


def _missing(group: FeatureGroup) -> list[Finding]:
    """Data files the table needs that are gone. Reported, never repaired: dropping them from the
    table would lose their rows for good, and a backup may still hold them."""
    missing = group.missing_files()
    if not missing:
        return []
    return [Finding(group.spec.table_name, f"{len(missing)} data file(s) the latest version needs are "
                    f"missing ({_named(missing)}): no read of the table works until they are restored from a "
                    "backup of the store (`--repair` does not drop them: their rows would be lost)")]


def _rows(group: FeatureGroup, repair: bool) -> list[Finding]:
    """The checks that read the rows (a key stored twice). A file that is there but cannot be read
    (not Parquet, truncated) is a finding too: a traceback here would hide every other check."""
    name = group.spec.table_name
    try:
        duplicated = group.duplicate_keys()
    except UNREADABLE as exc:
        return [Finding(name, f"its rows cannot be read ({type(exc).__name__}: {first_line(exc)}); "
                              f"restore {_named(_unreadable(group), 'the damaged file')} from a "
                              "backup of the store")]
    if not duplicated.num_rows:
        return []
    extra = sum(duplicated.column("count_all").to_pylist()) - duplicated.num_rows
    fixed = f"{group.remove_duplicates()} extra row(s) removed in one commit" if repair else None
    return [Finding(name, f"{duplicated.num_rows} key(s) stored more than once ({extra} extra row(s))",
                    fixed)]


def _unreadable(group: FeatureGroup) -> list[str]:
    """The files :meth:`~heartrisk.store.table.FeatureGroup.unreadable_files` names, or none when
    listing them fails too (a table delta-rs cannot open as a dataset: the finding stays one line)."""
    try:
        return group.unreadable_files()
    except UNREADABLE:
        return []


def _named(files: list[str], otherwise: str = "") -> str:
    """Up to three file names, then how many more (``otherwise`` when there are none)."""
    if not files:
        return otherwise
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def _leases(settings: Settings, repair: bool) -> list[Finding]:
    objects = open_objects(settings.store_root)
    now = time.time()
    found = []
    for record, tag in read_leases(objects):
        if record.released or now < record.expires_at:
            continue
        fixed = "released" if repair and clear_expired(objects, record, tag, now) else None
        found.append(Finding(f"lease {record.name}", f"expired {now - record.expires_at:.0f} s ago and "
                             f"was never given back (holder {record.holder} crashed?)", fixed))
    return found


def _champions(settings: Settings) -> list[Finding]:
    from heartrisk.model.registry import MODEL_NAME
    from heartrisk.synth.registry import REGISTERED_MODEL

    found = []
    for name, command in ((MODEL_NAME, "heartrisk model rollback"),
                          (REGISTERED_MODEL, "heartrisk synth promote VERSION")):
        files = champion_files(settings, name)
        if files is not None and files[2] == 0:
            version, location, _ = files
            found.append(Finding(f"{name}@champion", f"version {version}'s artifacts are missing at "
                                 f"{location}; move the alias to a version that loads (`{command}`)"))
    return found
