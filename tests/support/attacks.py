"""Attacks on saved artifacts: what someone holding a registered model's files could rebuild of the rows
it was trained on. The privacy tests run them against real artifacts and expect them to fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd


def rebuild_ctgan_rows(model: Any) -> pd.DataFrame:
    """Every fitted row's categorical answers (and diagnosis), rebuilt from CTGAN's data sampler: for
    each discrete column and category it lists the indices of the training rows that had it. Empty if
    the model holds no such state."""
    sampler = getattr(model, "_data_sampler", None)
    by_column = getattr(sampler, "_rid_by_cat_cols", None)
    if not by_column:
        return pd.DataFrame()
    discrete = [info for info in model._transformer._column_transform_info_list
                if info.column_type == "discrete"]
    rows = max(int(np.max(indices)) for column in by_column for indices in column if len(indices)) + 1
    rebuilt = {}
    for info, categories in zip(discrete, by_column, strict=True):
        values = np.full(rows, None, dtype=object)
        for category, indices in zip(info.transform.dummies, categories, strict=True):
            values[indices] = category
        rebuilt[info.column_name] = values
    return pd.DataFrame(rebuilt)


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        yield from ((f".{k}", v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        yield from ((f"[{i}]", v) for i, v in enumerate(value))
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        yield from ((f".{k}", v) for k, v in vars(value).items())
    elif hasattr(value, "__getstate__") and not isinstance(value, (str, bytes, type)):
        try:
            state = value.__getstate__()
        except TypeError:
            return
        if isinstance(state, dict):
            yield from ((f".{k}", v) for k, v in state.items())


def _walk(root: Any, leaves: tuple[type, ...], skip: tuple[type, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every object in ``root``'s graph once, with its path; ``leaves`` are yielded but not entered,
    ``skip`` types neither (scalars and strings never are)."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("model", root)]
    while stack:
        path, value = stack.pop()
        if id(value) in seen or isinstance(value, (str, bytes, int, float, bool, type(None), type)):
            continue
        seen.add(id(value))
        if skip and isinstance(value, skip):
            continue
        yield path, value
        if not isinstance(value, leaves):
            stack.extend((path + name, child) for name, child in _children(value))


def large_structures(root: Any, at_least: int, skip: tuple[type, ...] = ()) -> list[str]:
    """Paths of every array, tensor, frame or sequence in ``root``'s object graph with a dimension of at
    least ``at_least`` (pass the number of training rows, or half of it: state that grows with the
    rows is per-row state). ``skip`` types are not entered (e.g. a neural network's own weights)."""
    import torch

    found: list[str] = []
    for path, value in _walk(root, (np.ndarray, torch.Tensor, pd.DataFrame, pd.Series, set), skip):
        shape = None
        if isinstance(value, (np.ndarray, torch.Tensor, pd.DataFrame, pd.Series)):
            shape = tuple(value.shape)
        elif isinstance(value, (list, tuple, dict, set)):
            shape = (len(value),)
        if shape and max(shape) >= at_least:
            found.append(f"{path} {type(value).__name__}{shape}")
    return found


def rows_found_in(root: Any, rows: np.ndarray) -> list[str]:
    """Paths of 2-D float arrays in ``root``'s object graph holding any of ``rows`` exactly (rows as the
    model saw them, e.g. encoded): a model that keeps training rows gives them back this way."""
    wanted = {tuple(np.round(row, 9)) for row in np.asarray(rows, dtype=float)}
    found: list[str] = []
    for path, value in _walk(root, (np.ndarray,)):
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[1] == rows.shape[1] \
                and value.dtype.kind == "f":
            held = sum(tuple(np.round(row, 9)) in wanted for row in value)
            if held:
                found.append(f"{path}: {held} of its {len(value)} rows are training rows")
    return found


class CopyingModel:
    """A "synthesizer" that memorised its fit rows and gives them back: what the privacy gate must stop.

    Stands in for CTGAN inside a real :class:`~heartrisk.synth.synthesizer.Synthesizer` (it samples,
    saves and loads the same way), so the job, the registry and the gate run as they do for a fit."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.rows = rows.reset_index(drop=True)
        self._generator = "memorised rows"  # what the loader checks a fitted model has
        self._transformer = "none needed"
        self.random = np.random.default_rng(0)

    def sample(self, n: int, condition_column: str | None = None,
               condition_value: str | None = None) -> pd.DataFrame:
        rows = self.rows
        if condition_column is not None:
            rows = rows[rows[condition_column] == condition_value]
        return rows.iloc[self.random.integers(0, len(rows), n)].reset_index(drop=True)

    def set_random_state(self, seed: int) -> None:
        self.random = np.random.default_rng(seed)

    def set_device(self, _device: Any) -> None:
        """Nothing to move."""
