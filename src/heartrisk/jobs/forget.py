"""`heartrisk forget SUBMISSION_ID`: remove one person's shared submission so it cannot be read back.

A submission lives in up to four tables: ``heart_user`` (as shared), ``heart_user_quarantine`` (if the
merge held it back), ``heart`` (``record_id = user:<id>``, once merged) and ``heart_predictions`` (its
score, once batch inference ran), plus the monitoring folder's cached reference samples. Deleting the
rows is not enough with Delta Lake: older table versions still point at the files that hold them and
the commit log records each file's min/max statistics and the delete's own predicate. So for each table
this

1. deletes the rows (one commit, redone if a serve replica's commit won the race for the version:
   no ``CommitFailedError`` reaches the user);
2. purges the table's history (:meth:`~heartrisk.store.table.FeatureGroup.purge_history`): every data
   file the latest version does not use is vacuumed, and the commit log before a fresh checkpoint is
   removed, so neither the log nor an old version can be read back;
3. checks the latest version holds no such row (both steps under the table's maintenance lease, so a
   compaction on another machine cannot write the row back between them);
4. rewrites this machine's cached reference samples without the row
   (:func:`~heartrisk.monitoring.reads.scrub_reference_samples`). Other machines' caches are keyed on
   the time ``heart``'s history was last purged (a table property every machine reads), so they
   rebuild theirs from the store, which no longer has the row.

Before any of that it reaches the models (:func:`heartrisk.jobs.erasure.reach_models`): every
registered classifier and synthesizer version that learned from the row is marked, and the champions
among them are replaced (docs/reliability.md, "Erasure"). After it, it reaches them again with the row
it read first: a training run on another machine that read the row before the delete may have
registered since the first reach (:func:`heartrisk.jobs.erasure.after_delete`).

Every step is safe to repeat: a forget that was killed part-way is finished by running it again (it
purges the history even when there is no row left to delete). The id must be a UUID, the only form
``add_submission`` gives; checking it also keeps the SQL predicates free of injected text.

The cost: the history of ``heart``, ``heart_user`` and ``heart_predictions`` before the forget can no
longer be read (a model's lineage records the ``heart`` version it trained on; that version is gone,
which is why the lineage also records what the erasure rule needs without reading it back).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.jobs.erasure import Affected, after_delete, erased_row, reach_models
from heartrisk.monitoring.reads import scrub_reference_samples
from heartrisk.store.groups import (
    HEART,
    HEART_PREDICTIONS,
    HEART_USER,
    QUARANTINE,
    open_group,
    user_record_id,
)
from heartrisk.store.table import GroupSpec


class ForgetError(UserError, ValueError):
    """The id is not a submission id; nothing was changed."""


@dataclass(frozen=True)
class ForgetResult:
    """Rows removed per table, and how many old data files and cached samples were cleaned."""

    submission_id: str
    removed: dict[str, int]
    vacuumed_files: int
    reference_files: int
    tables: tuple[str, ...] = field(default=())
    #: The model versions that learned from the row (marked in the registry).
    models: Affected = field(default_factory=Affected)

    @property
    def total(self) -> int:
        return sum(self.removed.values())

    @property
    def merged_meanwhile(self) -> bool:
        """Whether the row was merged into ``heart`` while forget ran: not there when forget looked for
        it (before the delete), yet deleted from it. The lineage rule needs the row as read before the
        delete, so the models could not be checked."""
        return not self.models.merged and bool(self.removed.get(HEART.table_name))

    @property
    def summary(self) -> str:
        """For the job record: counts only, never the id (jobs.json is not a place for it)."""
        marked = len(self.models.classifiers) + len(self.models.synthesizers)
        return (f"removed {self.total} row(s)" + (f", marked {marked} model version(s)" if marked else "")
                + (", models not checked (merged while forget ran)" if self.merged_meanwhile else ""))

    @property
    def message(self) -> str:
        if not self.total:
            return (f"no rows held for submission {self.submission_id} (never stored, or already "
                    f"forgotten); the history of {len(self.tables)} table(s) was purged anyway")
        where = ", ".join(f"{name} {n}" for name, n in self.removed.items() if n)
        return (f"forgot submission {self.submission_id}: removed {self.total} row(s) ({where}); "
                f"{self.vacuumed_files} old data file(s) vacuumed and the commit history purged, so no "
                f"older table version can bring it back; {self.reference_files} cached sample(s) cleaned; "
                f"models: {self._models_message}")

    @property
    def _models_message(self) -> str:
        if self.merged_meanwhile:
            return ("not checked: it was merged into heart while forget ran, after forget had looked for "
                    "it, so no version was marked; a model trained in those moments may hold it (one whose "
                    "run was still going marks itself when it registers)")
        return self.models.message


def check_submission_id(value: str) -> str:
    """The id in canonical form (lower-case UUID), or a clear :class:`ForgetError`."""
    text = str(value).strip()
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != text.lower():
        raise ForgetError(f"{value!r} is not a submission id: expected the reference the person was given, "
                          "a UUID such as 0b7e5f8e-3c1d-4e0a-9d2b-6f1a2c3d4e5f")
    return str(parsed)


def targets(submission_id: str) -> list[tuple[GroupSpec, str]]:
    """Each table that can hold the submission, with the predicate matching its row."""
    user_record = user_record_id(submission_id)
    return [
        (HEART_USER, f"submission_id = '{submission_id}'"),
        (QUARANTINE, f"submission_id = '{submission_id}'"),
        (HEART, f"record_id = '{user_record}'"),
        (HEART_PREDICTIONS, f"record_id = '{user_record}'"),
    ]


def forget(settings: Settings, submission_id: str) -> ForgetResult:
    """Remove the submission from every table and purge their history (see the module docstring)."""
    sid = check_submission_id(submission_id)
    row = erased_row(settings, sid)  # read first: the lineage rule needs it, after the delete too
    models = reach_models(settings, row)  # a re-run marks the same
    removed: dict[str, int] = {}
    vacuumed = 0
    purged: list[str] = []
    for spec, predicate in targets(sid):
        group = open_group(settings, spec)
        if not group.exists():
            continue
        removed[spec.table_name], files = group.forget_rows(predicate)
        vacuumed += files
        purged.append(spec.table_name)
    references = scrub_reference_samples(settings, user_record_id(sid))
    models = reach_models(settings, after_delete(settings, row), models)
    return ForgetResult(submission_id=sid, removed=removed, vacuumed_files=vacuumed,
                        reference_files=references, tables=tuple(purged), models=models)
