"""The fit's uniform-number draws have torch's distributions and leave nothing behind on the model."""

from __future__ import annotations

import pickle

import pytest
import torch

from heartrisk.synth.fast_noise import UniformDropout, gumbel_softmax, uniform_noise


def test_dropout_keeps_each_unit_with_probability_one_minus_p_and_rescales() -> None:
    torch.manual_seed(0)
    x = torch.ones(1_000, 1_000)
    out = UniformDropout(0.5)(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.002  # 1e6 units: sd 0.0005
    assert torch.all(out[kept] == 2.0)  # scaled by 1 / (1 - p), as torch.nn.Dropout does
    assert abs(out.mean().item() - 1.0) < 0.004  # the expectation is kept


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
