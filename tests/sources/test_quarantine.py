"""The daily merge quarantines implausible shared outcomes: repeats in bulk, no answers, out of spec."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import write_deltalake

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.jobs.daily import run_daily
from heartrisk.runtime.status import collect_status
from heartrisk.sources.quarantine import quarantine_status
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, HEART_USER, QUARANTINE, open_group
from support.web import ANSWERS


def user_ids_in_heart(settings: Settings) -> set[str]:
    ids = open_group(settings, HEART).read(columns=["record_id"], sources=["user"])["record_id"]
    return {i.removeprefix("user:") for i in ids}


def write_unchecked(settings: Settings, answers: dict[str, object], heart_disease: bool) -> str:
    """A heart_user row written past the spec check (an older spec, another writer)."""
    submission_id = str(uuid.uuid4())
    row = dict.fromkeys(FEATURE_NAMES) | answers
    row |= {"submission_id": submission_id, "submitted_at": datetime.now(UTC), "heart_disease": heart_disease}
    write_deltalake(open_group(settings, HEART_USER).uri,
                    pa.Table.from_pylist([row], schema=HEART_USER.schema), mode="append")
    return submission_id


def test_the_merge_quarantines_repeats_empty_and_out_of_spec(ingested: Settings) -> None:
    settings = ingested
    flood = [add_submission(settings, ANSWERS, True) for _ in range(8)]       # 8 identical: held
    fine = [add_submission(settings, {**ANSWERS, "bmi": 30.0}, False) for _ in range(5)]  # 5: merged
    other = add_submission(settings, {"bmi": 22.0, "sex": "Female"}, False)
    empty = add_submission(settings, {}, True)
    bad = write_unchecked(settings, {"bmi": 500.0, "sex": "Female"}, False)

    result = run_daily(settings, synthetic=0)
    assert (result.user_rows, result.quarantined) == (6, 10)
    assert user_ids_in_heart(settings) == {*fine, other}
    held = open_group(settings, QUARANTINE).read().set_index("submission_id")
    assert set(held.index) == {*flood, empty, bad}
    assert held.loc[flood[0], "reason"].startswith("repeated: the same answers and diagnosis 8 times on ")
    assert held.loc[empty, "reason"] == "no answers"
    assert held.loc[bad, "reason"].startswith("out of spec: bmi 500.0 is out of range")
    assert held.loc[bad, "bmi"] == 500.0 and held.loc[bad, "sex"] == "Female"  # kept whole

    again = run_daily(settings, synthetic=0)  # nothing is merged or quarantined twice
    assert (again.user_rows, again.quarantined) == (0, 0)
    assert len(open_group(settings, QUARANTINE).read()) == 10
    assert quarantine_status(settings)["by_rule"] == {"out of spec": 1, "no answers": 1, "repeated": 8}
    assert collect_status(settings)["quarantine"]["rows"] == 10
