"""Training end to end on a temporary store and MLflow: what is logged, the test side, the gate and
the model's behaviour. One quick model is trained per session (`trained_home`, tests/conftest.py)."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURES
from heartrisk.jobs.train import TrainError, TrainSettings, load_data, train
from heartrisk.model import registry
from heartrisk.model.estimator import FAMILIES, TREATMENTS
from heartrisk.store.groups import HEART, REAL_SOURCES, open_group
from heartrisk.store.view import FeatureView

TYPICAL = {
    "bmi": 28.0, "smoking": "No", "alcohol_drinking": "No", "stroke": "No", "physical_health": 0,
    "mental_health": 0, "diff_walking": "No", "sex": "Male", "age_category": "55-59", "race": "White",
    "diabetic": "No", "physical_activity": "Yes", "gen_health": "Good", "sleep_time": 7,
    "asthma": "No", "kidney_disease": "No", "skin_cancer": "No",
}


@pytest.fixture(scope="module")
def champion_run(trained_home: Settings) -> mlflow.entities.Run:
    client = registry.client(trained_home)
    return client.get_run(registry.champion_model(trained_home).run_id)


def test_the_run_logs_params_metrics_lineage_and_artifacts(
        trained_home: Settings, champion_run: mlflow.entities.Run) -> None:
    params, metrics = champion_run.data.params, champion_run.data.metrics
    assert params["feature_group"] == "heart_v1" and params["feature_group_version"] == "1"
    assert params["family"] in FAMILIES and params["treatment"] in TREATMENTS
    assert len(champion_run.data.tags["mlflow.source.git.commit"]) in (40, len("unknown"))
    for name in ("roc_auc", "pr_auc", "brier", "precision", "recall", "f1", "tp", "fp", "tn", "fn"):
        assert f"test_{name}" in metrics
    inputs = {d.tags[0].value: d.dataset for d in champion_run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "testing"}
    assert inputs["testing"].name == "heart_v1@v1" and '"delta_table_version": 1' in \
        inputs["testing"].source
    client = registry.client(trained_home)
    top = {a.path for a in client.list_artifacts(champion_run.info.run_id)}
    plots = {a.path for a in client.list_artifacts(champion_run.info.run_id, "plots")}
    assert {"candidates.csv", "candidates.md", "plots"} <= top
    assert {f"plots/{n}.png" for n in ("confusion_matrix", "roc_curve", "pr_curve", "reliability",
                                       "shap_summary")} <= plots
    table = pd.read_csv(client.download_artifacts(champion_run.info.run_id, "candidates.csv"))
    assert len(table) == len(FAMILIES) * len(TREATMENTS)
    assert table["chosen"].sum() == 1


def test_the_model_has_a_signature_with_17_optional_inputs(champion_run: mlflow.entities.Run,
                                                           trained_home: Settings) -> None:
    mlflow.set_tracking_uri(trained_home.tracking_uri)
    info = mlflow.models.get_model_info("models:/heart-risk-classifier@champion")
    inputs = info.signature.inputs.to_dict()
    assert [c["name"] for c in inputs] == [f.name for f in FEATURES]
    assert all(c["required"] is False for c in inputs)


def test_the_test_side_holds_only_real_records(trained_home: Settings,
                                               champion_run: mlflow.entities.Run) -> None:
    split = FeatureView(open_group(trained_home, HEART)).train_test_split()
    frame = open_group(trained_home, HEART).read(columns=["record_id", "source"])
    sources = frame.set_index("record_id")["source"]
    assert sources.loc[split.test_ids].isin(REAL_SOURCES).all()
    assert int(champion_run.data.params["test_rows"]) == len(split.test_ids)
    assert set(split.test_ids).isdisjoint(split.train_ids)


def test_the_gate_keeps_a_worse_model_out(trained: Settings) -> None:
    weaker = TrainSettings.for_quick(families=("logreg",), treatments=("none",), max_train_rows=400,
                                     search_rows=400)
    result = train(trained, weaker)
    assert result.version == "2"
    assert not result.promoted and result.decision.startswith("kept out")
    assert result.comparison is not None and not result.comparison.significant
    assert registry.champion_version(trained) == "1"
    tags = {v["version"]: v["tags"] for v in registry.versions(trained)}
    assert tags["2"]["decision"].startswith("kept out")
    registry.promote(trained, "2", "operator override in a test")
    assert registry.champion_version(trained) == "2"
    assert registry.rollback(trained) == "1"
    assert registry.champion_version(trained) == "1"


def test_synthetic_rows_join_training_up_to_their_cap(ingested: Settings) -> None:
    heart = open_group(ingested, HEART)
    real = heart.read()
    fake = real.sample(2_000, random_state=0).reset_index(drop=True)
    fake["record_id"] = [f"synthetic:test:{i}" for i in range(len(fake))]
    fake["source"] = "synthetic"
    heart.insert(fake)

    def used(**knobs: object) -> tuple[int, int]:
        data = load_data(ingested, TrainSettings(**knobs))
        return data.synthetic_rows, len(data.y_fit) + len(data.y_holdout) - data.synthetic_rows

    synthetic, real_rows = used(max_synthetic_share=0.1)
    assert real_rows > 4_000 and synthetic == int(0.1 * real_rows)
    # copies of real rows: those whose answers are on the test side never train (about a fifth)
    on_training_side = int((load_data(ingested, TrainSettings()).split.train_sources == "synthetic").sum())
    assert 1_400 < on_training_side < 1_900
    assert used(max_synthetic_share=1.0)[0] == on_training_side
    assert used(include_synthetic=False)[0] == 0
    assert used(max_synthetic_share=0.0)[0] == 0


def test_training_without_data_says_what_to_run(settings: Settings) -> None:
    from heartrisk.store.table import StoreError

    with pytest.raises(StoreError, match="heartrisk ingest"):
        train(settings, TrainSettings.for_quick())


def test_too_few_positives_is_a_clear_error(settings: Settings, sample_csv) -> None:
    from heartrisk.jobs.ingest import ingest

    few = pd.read_csv(sample_csv, dtype=str, keep_default_na=False).head(150)
    path = settings.home.parent / "few.csv"
    settings.home.mkdir(parents=True)
    few.to_csv(path, index=False)
    ingest(settings, path)
    with pytest.raises(TrainError, match="at least 20"):
        train(settings, TrainSettings.for_quick())


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown model families"):
        TrainSettings(families=("xgboost",))
    with pytest.raises(ValueError, match="extra"):
        TrainSettings(epochs=3)


@pytest.mark.parametrize(("feature", "lower", "higher"), [
    ("stroke", "No", "Yes"),
    ("diff_walking", "No", "Yes"),
    ("age_category", "45-49", "75-79"),
    ("gen_health", "Very good", "Poor"),
])
def test_a_worse_answer_does_not_lower_the_risk(trained_home: Settings, feature: str, lower: str,
                                                higher: str) -> None:
    model = registry.champion_model(trained_home)
    rows = pd.DataFrame([{**TYPICAL, feature: lower}, {**TYPICAL, feature: higher}])
    low, high = model.predict_proba(rows)
    assert high >= low, f"{feature}={higher} gave {high:.4f} < {feature}={lower} {low:.4f}"


def test_age_does_not_lower_the_risk_step_by_step(trained_home: Settings) -> None:
    model = registry.champion_model(trained_home)
    ages = next(f for f in FEATURES if f.name == "age_category").values
    risks = model.predict_proba(pd.DataFrame([{**TYPICAL, "age_category": a} for a in ages]))
    assert risks[-1] > 3 * risks[0]
    assert (pd.Series(risks).diff().dropna() >= -0.002).all(), risks


def test_training_leaves_mlflow_process_wide_uri_alone(ingested: Settings) -> None:
    """Two homes share a process (a server and a job, two tests): a job must talk to its own home's
    registry through its own client, never by pointing MLflow's global default at it."""
    before = mlflow.get_tracking_uri()
    result = train(ingested, TrainSettings.for_quick(families=("logreg",), treatments=("none",)))
    assert result.version == "1" and result.promoted
    assert mlflow.get_tracking_uri() == before != ingested.tracking_uri
    assert registry.champion_version(ingested) == "1"
