"""The fit's uniform-number draws have torch's distributions and leave nothing behind on the model."""

from __future__ import annotations

import pickle

import pytest
import torch

from heartrisk.config import Settings
from heartrisk.synth.fast_noise import UniformDropout, gumbel_softmax, uniform_noise


def test_dropout_keeps_each_unit_with_probability_one_minus_p_and_rescales() -> None:
    torch.manual_seed(0)
    x = torch.ones(1_000, 1_000)
    out = UniformDropout(0.5)(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.002  # 1e6 units: sd 0.0005
    assert torch.all(out[kept] == 2.0)  # scaled by 1 / (1 - p), as torch.nn.Dropout does
    assert abs(out.mean().item() - 1.0) < 0.004  # the expectation is kept


def test_dropout_keeps_as_many_units_as_torchs_own_at_another_probability() -> None:
    """At p = 0.5 keeping with probability p looks like keeping with 1 - p; at 0.3 it does not."""
    x = torch.ones(1_000, 1_000)
    torch.manual_seed(2)
    ours = UniformDropout(0.3)(x)
    theirs = torch.nn.Dropout(0.3)(x)
    assert abs((ours != 0).float().mean().item() - (theirs != 0).float().mean().item()) < 0.003
    assert torch.allclose(ours.unique(), theirs.unique())  # 0 and 1 / 0.7
    assert repr(UniformDropout(0.3)) == "UniformDropout(p=0.3)"


def test_dropout_is_the_identity_when_evaluating_and_refuses_a_bad_probability() -> None:
    layer = UniformDropout(0.5).eval()
    x = torch.randn(50, 8)
    assert layer(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        UniformDropout(1.0)


def test_gumbel_softmax_picks_each_category_as_often_as_torchs_own() -> None:
    logits = torch.log(torch.tensor([0.6, 0.25, 0.1, 0.05])).repeat(100_000, 1)
    torch.manual_seed(1)
    ours = gumbel_softmax(logits, tau=0.2)
    theirs = torch.nn.functional.gumbel_softmax(logits, tau=0.2)
    assert torch.allclose(ours.sum(dim=1), torch.ones(len(logits)))
    share = torch.bincount(ours.argmax(dim=1), minlength=4).float() / len(logits)
    share_torch = torch.bincount(theirs.argmax(dim=1), minlength=4).float() / len(logits)
    expected = torch.tensor([0.6, 0.25, 0.1, 0.05])  # Gumbel-max: argmax frequencies are the softmax
    assert torch.allclose(share, expected, atol=0.006)
    assert torch.allclose(share, share_torch, atol=0.008)
    assert torch.isfinite(ours).all()


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_gumbel_softmax_has_torchs_soft_values_at_each_temperature(tau: float) -> None:
    """Argmax shares do not depend on the temperature; the soft values do."""
    logits = torch.log(torch.tensor([0.6, 0.25, 0.1, 0.05])).repeat(100_000, 1)
    torch.manual_seed(3)
    ours, theirs = gumbel_softmax(logits, tau=tau), torch.nn.functional.gumbel_softmax(logits, tau=tau)
    assert torch.allclose(ours.mean(dim=0), theirs.mean(dim=0), atol=0.006)
    assert abs(ours.max(dim=1).values.mean().item() - theirs.max(dim=1).values.mean().item()) < 0.004


def test_gumbel_softmax_fails_loudly_on_nan_logits_as_ctgans_own_does() -> None:
    with pytest.raises(ValueError, match="NaN"):
        gumbel_softmax(torch.tensor([[0.0, float("nan")]]), tau=0.2)


def test_hard_gumbel_softmax_is_one_hot_and_passes_the_soft_gradient() -> None:
    logits = torch.randn(64, 5, requires_grad=True)
    hard = gumbel_softmax(logits, tau=0.5, hard=True)
    assert torch.all(hard.detach().sum(dim=1) == 1) and set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    (hard * torch.arange(5.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_the_draws_are_in_place_only_inside_the_block() -> None:
    import ctgan.synthesizers.ctgan as ctgan_module
    from ctgan import CTGAN

    model = CTGAN(epochs=1)
    original_dropout = ctgan_module.Dropout
    with uniform_noise(model):
        assert ctgan_module.Dropout is UniformDropout
        assert model._gumbel_softmax is gumbel_softmax
    assert ctgan_module.Dropout is original_dropout
    assert "_gumbel_softmax" not in model.__dict__  # the saved model samples with ctgan's own code
    assert b"fast_noise" not in pickle.dumps(model)

    with pytest.raises(RuntimeError), uniform_noise(model):
        raise RuntimeError("a fit that fails")
    assert ctgan_module.Dropout is original_dropout and "_gumbel_softmax" not in model.__dict__


def test_overlapping_blocks_never_leave_ours_in_ctgan() -> None:
    import ctgan.synthesizers.ctgan as ctgan_module
    from ctgan import CTGAN

    original_dropout = ctgan_module.Dropout
    first, second = uniform_noise(CTGAN(epochs=1)), uniform_noise(CTGAN(epochs=1))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start ends first
    second.__exit__(None, None, None)
    assert ctgan_module.Dropout is original_dropout


def test_a_fit_draws_through_both_while_it_runs(ingested: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit wires the draws in, and ctgan still looks both names up where they are swapped; if
    either stopped, the fit would silently run at the old speed."""
    from heartrisk.jobs.synth_train import real_rows
    from heartrisk.synth import fast_noise
    from heartrisk.synth.fit import SynthSettings, fit_synthesizer

    calls = {"dropout": 0, "gumbel": 0}
    dropout_forward, gumbel = UniformDropout.forward, fast_noise.gumbel_softmax

    def counted_forward(self: UniformDropout, x: torch.Tensor) -> torch.Tensor:
        calls["dropout"] += 1
        return dropout_forward(self, x)

    def counted_gumbel(*args: object, **kwargs: object) -> torch.Tensor:
        calls["gumbel"] += 1
        return gumbel(*args, **kwargs)

    monkeypatch.setattr(UniformDropout, "forward", counted_forward)
    monkeypatch.setattr(fast_noise, "gumbel_softmax", counted_gumbel)
    knobs = SynthSettings.quick(epochs=1, rows=400, batch_size=100)
    rows = real_rows(ingested, knobs)
    result = fit_synthesizer(rows.fit, rows.selection, knobs)
    assert calls["dropout"] > 0 and calls["gumbel"] > 0
    assert "_gumbel_softmax" not in result.synthesizer.model.__dict__
