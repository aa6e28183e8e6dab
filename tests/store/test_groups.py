"""The five feature groups and the record-id scheme: the one place that knows either."""

from __future__ import annotations

import pandas as pd

from heartrisk.config import Settings
from heartrisk.store.groups import (
    GROUPS,
    HEART,
    HEART_USER,
    QUARANTINE,
    from_sources,
    kaggle_record_ids,
    store_status,
    synthetic_record_ids,
    user_record_id,
    user_record_ids,
)


def test_a_record_id_says_where_the_row_came_from() -> None:
    kaggle = kaggle_record_ids("90a1e2e8bdcb4aba54314a41d35d2ac3", pd.RangeIndex(2, 5))
    assert kaggle.tolist() == ["kaggle:90a1e2e8bdcb4aba:2", "kaggle:90a1e2e8bdcb4aba:3",
                               "kaggle:90a1e2e8bdcb4aba:4"]
    assert synthetic_record_ids("run9", 2) == ["synthetic:run9:000000", "synthetic:run9:000001"]
    assert user_record_id("0b7e") == "user:0b7e"
    assert user_record_ids(pd.Series(["a", "b"])).tolist() == ["user:a", "user:b"]
    ids = pd.Series([*kaggle, "synthetic:run9:000000", "user:0b7e", "kaggleish:x"])
    assert from_sources(ids, ("kaggle",)).tolist() == [True, True, True, False, False, False]
    assert from_sources(ids, ("synthetic", "user")).tolist() == [False] * 3 + [True, True, False]


def test_the_quarantine_is_a_group_like_the_others(ingested: Settings) -> None:
    assert [spec.name for spec in GROUPS] == ["heart", "heart_user", "heart_user_quarantine",
                                              "heart_predictions", "serving_profile"]
    assert QUARANTINE.columns == [*HEART_USER.columns, "quarantined_at", "reason"]
    status = store_status(ingested)
    assert set(status) == {spec.table_name for spec in GROUPS}
    assert status[HEART.table_name]["rows"] == 6000 and not status[QUARANTINE.table_name]["exists"]
