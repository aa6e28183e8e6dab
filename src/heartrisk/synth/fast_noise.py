"""CTGAN's random noise drawn from uniform numbers, for the duration of a fit.

Why: on the CPU build of torch that runs here, the two random draws inside a CTGAN step are slow
samplers: ``Dropout`` draws its mask with ``bernoulli_`` (~10 ns a number, 4x ``torch.rand``) and
``gumbel_softmax`` its noise with ``exponential_`` (~16 ns a number). A profile of a fit put 12 % of
its CPU in the discriminator's dropout and 10 % in the generator's Gumbel noise; drawing both from
``torch.rand`` made an epoch 10 % cheaper (60,000 rows, pac 2, one thread: median 5.08 against 5.64
CPU s, ``bench/ctgan_noise.py``).

The distributions are the same, only the random stream differs:

* a unit is kept when a uniform number is at least ``p`` (probability ``1 - p``) and scaled by
  ``1 / (1 - p)``, as ``torch.nn.Dropout`` does;
* Gumbel noise is ``-log(-log(U))`` for uniform ``U`` (``exponential_`` is ``-log(U)``), with ``U``
  kept inside (0, 1) so the noise is finite (the clamp cuts the noise above ~15.9, probability
  ~1e-7). NaN can then only come from the generator's own logits: like ctgan's wrapper, the draw
  raises then, so a diverged fit fails loudly instead of being scored.

Both are put in place only while one fit runs: the discriminator is built from ctgan's module name
``Dropout`` inside ``CTGAN.fit`` (and never saved), and the Gumbel draw is an attribute of the one
model object, deleted when the fit ends, so the saved synthesizer samples with ctgan's own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class UniformDropout(torch.nn.Module):
    """``torch.nn.Dropout`` with its mask drawn by ``torch.rand`` (see the module docstring)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, hard: bool = False, eps: float = 1e-10,
                   dim: int = -1) -> torch.Tensor:
    """``torch.nn.functional.gumbel_softmax`` with its noise drawn by ``torch.rand``.

    ``eps`` is accepted for ctgan's call and unused, as in torch.
    """
    info = torch.finfo(logits.dtype)
    uniform = torch.rand_like(logits).clamp_(min=info.tiny, max=1.0 - info.eps)
    soft = torch.softmax((logits - torch.log(-torch.log(uniform))) / tau, dim)
    if torch.isnan(soft).any():
        raise ValueError("gumbel_softmax returning NaN.")  # ctgan's message for the same failure
    if not hard:
        return soft
    index = soft.argmax(dim, keepdim=True)
    return torch.zeros_like(soft).scatter_(dim, index, 1.0) - soft.detach() + soft


@contextmanager
def uniform_noise(model: Any) -> Iterator[None]:
    """While the block runs, ``model`` (a ctgan ``CTGAN``) fits and samples with the draws above.

    Fits run one at a time (the synth lease). Should two blocks still overlap, the one that ends first
    puts torch's ``Dropout`` back, never ours: a fit builds its discriminator when it starts, so the
    other fit keeps the draws it began with, and ctgan is never left with ours.
    """
    import ctgan.synthesizers.ctgan as ctgan_module

    dropout = torch.nn.Dropout if ctgan_module.Dropout is UniformDropout else ctgan_module.Dropout
    ctgan_module.Dropout = UniformDropout
    model._gumbel_softmax = gumbel_softmax  # shadows ctgan's static method on this object only
    try:
        yield
    finally:
        ctgan_module.Dropout = dropout
        model.__dict__.pop("_gumbel_softmax", None)
