"""No training row in the synthesizer's artifact: an attack on the saved file rebuilds nothing, and the
stripped model samples exactly as the full one did (conditioned on the label too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from heartrisk.config import Settings
from heartrisk.features import CATEGORICAL_FEATURES, LABEL
from heartrisk.jobs.synth_train import real_rows
from heartrisk.synth.fit import SynthSettings, training_frame
from heartrisk.synth.registry import REGISTERED_MODEL
from heartrisk.synth.synthesizer import holds_training_rows, strip_training_state
from heartrisk.tracking import client as registry_client
from support.attacks import large_structures, rebuild_ctgan_rows

LEGACY_WEIGHTS = next((Path(__file__).resolve().parents[1] / "fixtures" / "legacy_home").rglob("ctgan.pt"))


def saved_weights(settings: Settings, version: str = "1") -> Path:
    source = registry_client(settings).get_model_version(REGISTERED_MODEL, version).source
    return next(Path(source.removeprefix("file://")).rglob("ctgan.pt"))


def test_the_saved_synthesizer_gives_back_no_training_row(quick_synthesizer: Settings) -> None:
    """The attack: read the registered file as anyone with the artifact store could, and rebuild each
    fitted row's answers from the sampler's row indices. Before the fix it rebuilt all 2,000."""
    model = torch.load(saved_weights(quick_synthesizer), weights_only=False, map_location="cpu")
    fitted = training_frame(real_rows(quick_synthesizer, SynthSettings.quick()).fit)
    rebuilt = rebuild_ctgan_rows(model)
    columns = [*CATEGORICAL_FEATURES, LABEL.name]
    same = 0 if rebuilt.empty else int((rebuilt[columns].to_numpy() == fitted[columns].to_numpy())
                                       .all(axis=1).sum())
    assert same == 0, f"{same} of {len(fitted):,} training rows rebuilt from the saved synthesizer"
    assert rebuilt.empty
    assert not holds_training_rows(model)
    # Nothing else in the file grows with the training rows (weights are fixed-size, not entered).
    assert large_structures(model, at_least=len(fitted) // 2, skip=(torch.nn.Module,)) == []


def test_stripping_changes_no_sample_conditioned_or_not() -> None:
    """A model saved before stripping (the legacy fixture's) samples the same rows once stripped."""
    full = torch.load(LEGACY_WEIGHTS, weights_only=False, map_location="cpu")
    assert holds_training_rows(full) and not rebuild_ctgan_rows(full).empty  # the old file leaks
    stripped = strip_training_state(full)
    assert not holds_training_rows(stripped) and rebuild_ctgan_rows(stripped).empty
    assert holds_training_rows(full)  # stripping copies: the object it was given is untouched
    for condition in ((), (LABEL.name, "Yes"), (LABEL.name, "No")):
        samples = []
        for model in (full, stripped):
            model.set_random_state(7)
            with torch.no_grad():
                samples.append(model.sample(300, *condition))
        pd.testing.assert_frame_equal(samples[0], samples[1])
        assert len(samples[1]) == 300 and set(samples[1][LABEL.name]) <= {"Yes", "No"}
    np.testing.assert_array_equal(stripped._data_sampler._discrete_column_category_prob,
                                  full._data_sampler._discrete_column_category_prob)


@pytest.mark.parametrize("attribute", ["_data", "_rows_seen"])
def test_state_a_later_ctgan_might_add_is_dropped_too(attribute: str) -> None:
    """Only what sampling needs is kept (an allow-list), not only the one attribute known today."""
    full = torch.load(LEGACY_WEIGHTS, weights_only=False, map_location="cpu")
    setattr(full._data_sampler, attribute, np.arange(10))
    assert not hasattr(strip_training_state(full)._data_sampler, attribute)
