"""Exact path-dependent TreeSHAP of a LightGBM booster, compiled to flat arrays and run by numba.

Why not LightGBM's own ``pred_contrib``: it *is* TreeSHAP in C++ (Lundberg's algorithm, O(L·D²) per tree
and row, L leaves, D depth), and a full champion (up to 500 trees of 47 leaves, 22 deep) spends most of a
request in it. These are the same values (same trees, same covers, same "tree path dependent" game),
computed in O(nodes·D/2) per tree by Linear TreeSHAP (Yu et al., NeurIPS 2022):

* the contribution of one leaf to feature ``i`` is ``v·(o_i - z_i)·∫₀¹ Π_{j≠i} (t·o_j + (1-t)·z_j) dt``,
  where ``j`` runs over the distinct features on the leaf's path, ``z_j`` is the share of training rows
  that follow the path at ``j``'s splits (the cover ratios) and ``o_j`` is 1 if the row follows it
  (Shapley's weights written as a Beta integral);
* the integrand is a polynomial of degree below the path's distinct features, so a Gauss-Legendre rule
  of ceil(m/2) nodes integrates it exactly, and the sums over leaves are shared along the tree in one
  pass down and up (see :func:`_linear_tree`).

Measured (median CPU time of one-row calls as bench/explain.py times them, 499 trees x 47 leaves, 22
deep, load average 22-26 on 2 cores, so to re-measure on an idle machine): LightGBM 8.4-9.7 ms, this
2.7-4.0 ms. Integrating each leaf on its own, with precomputed tables for short paths (Fast TreeSHAP
v2's idea), took 4.5 ms: the tables (up to 64 MB) missed the cache.

Small trees go further (:class:`DecisionTables`): a tree of 9 splits can explain a row in only 512
ways, so each is computed once and a row is explained by its decisions and one lookup per tree. The
1-SE champion (301 trees x 10 leaves) is explained that way whole: a request's one-row explanation
took 19.6 µs of CPU against 211 µs by Linear TreeSHAP and 236 µs by LightGBM (bench/explain.py,
one-row medians in the same run, load 0.9-1.0).

:func:`compile_lightgbm` checks margins and contributions against the booster's own ``predict`` and
``pred_contrib`` on rows that hit every threshold of every tree, and refuses a booster it does not
cover (categorical splits, linear trees, several classes), so a caller can fall back to LightGBM.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numba import njit

#: Rows of the compile-time check against LightGBM's own values.
CHECK_ROWS = 256
_TOLERANCE = 1e-9
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_ZERO = 1e-35  # LightGBM's kZeroThreshold
#: Trees with at most this many splits get :class:`DecisionTables` (2**10 patterns a tree).
TABLE_SPLITS = 10
#: At most this many table values in all (8 bytes each: 32 MB); trees beyond it use Linear TreeSHAP.
TABLE_BUDGET = 4 * 1024 * 1024


@dataclass(frozen=True)
class CompiledTrees:
    """A LightGBM binary booster as flat node arrays (one index space for all trees).

    Node ``n`` is a leaf when ``left[n] < 0``; ``roots[k]`` is tree ``k``'s first node and ``rules[k]``
    the number of quadrature nodes its paths need (row ``rules[k]`` of ``nodes_t``/``nodes_w``).
    """

    n_features: int
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    left: np.ndarray
    right: np.ndarray
    count: np.ndarray
    value: np.ndarray
    rules: np.ndarray
    nodes_t: np.ndarray
    nodes_w: np.ndarray
    max_depth: int
    expected_value: float
    tables: DecisionTables

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw log-odds per row (the booster's ``predict(raw_score=True)``)."""
        return _margin(_rows(X), self.roots, self.feature, self.threshold, self.default_left,
                       self.missing, self.left, self.right, self.value)

    def margin_near(self, X: np.ndarray) -> np.ndarray:
        """:meth:`margin` of rows that mostly repeat the first (a person's what-ifs and draws of
        their Unknowns): each later row walks only the trees that split on a column where it differs
        from the first, and adds the change of their leaves to the first row's margin. A request's
        ~20 rows change half the trees, or fewer (bench/explain.py)."""
        return self._near(_rows(X), None)

    def margin_near_explained(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`margin_near`, and the first row's :meth:`contributions` from the decisions the
        margins already took (every tree tabled; else computed on their own)."""
        X = _rows(X)
        if not self.tables.complete:
            values, base = self.contributions(X[:1])
            return self.margin_near(X), values[0], base
        first = np.zeros(self.n_features)
        return self._near(X, first), first, self.expected_value

    def _near(self, X: np.ndarray, first: np.ndarray | None) -> np.ndarray:
        if X.shape[1] != self.n_features:  # the kernel indexes its column lists by X's columns
            raise ValueError(f"rows have {X.shape[1]} columns; the booster was fitted on {self.n_features}")
        splits_at, splits, tree_of = self.column_splits
        t = self.tables
        return _margin_near(X, self.roots, self.feature, self.threshold, self.default_left, self.missing,
                            self.left, self.right, self.value, t.bit, t.leaf_at, t.leaves, splits_at, splits,
                            tree_of, t.at, t.width, t.features_at, t.features, t.values,
                            np.zeros(0) if first is None else first, first is not None)

    @functools.cached_property
    def column_splits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The splits on each column (``splits[splits_at[c]:splits_at[c + 1]]`` for column c) and
        each node's tree."""
        tree_of = np.repeat(np.arange(len(self.roots)), np.diff(np.r_[self.roots, len(self.feature)]))
        nodes = np.flatnonzero(self.left >= 0)
        nodes = nodes[np.argsort(self.feature[nodes], kind="stable")]
        splits_at = np.searchsorted(self.feature[nodes], np.arange(self.n_features + 1))
        return splits_at.astype(np.int64), nodes.astype(np.int64), tree_of.astype(np.int64)

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        """SHAP values per row and encoded column (raw log-odds) and the base value: the booster's
        ``pred_contrib`` split into its columns and its last one."""
        X = _rows(X)
        out = np.zeros((X.shape[0], self.n_features))
        t = self.tables
        _contributions(X, out, self.roots, self.rules, self.feature, self.threshold, self.default_left,
                       self.missing, self.left, self.right, self.count, self.value, self.nodes_t,
                       self.nodes_w, self.max_depth, self.n_features, t.bit, t.at, t.width,
                       t.features_at, t.features, t.values)
        return out, self.expected_value

    def without_tables(self) -> CompiledTrees:
        """The same trees explained by Linear TreeSHAP alone (the baseline bench/explain.py times)."""
        return replace(self, tables=DecisionTables.empty(len(self.roots), len(self.feature)))


@dataclass(frozen=True)
class DecisionTables:
    """Each small tree's SHAP values for every way a row can go at its splits, looked up per row.

    Path-dependent TreeSHAP sees a row only through the side it takes at each split of the tree
    (``hot`` in :func:`_linear_tree`), so a tree of ``s`` splits has at most ``2**s`` different
    answers. For a tree of at most :data:`TABLE_SPLITS` splits they are computed once, by the same
    kernel, and a row's values are then its ``s`` decisions (a bit pattern) and one lookup: the
    1-SE champion's 301 trees x 10 leaves, 9 splits each, need 512 patterns a tree (about 7 MB in
    all); trees of 47 leaves are left to Linear TreeSHAP. ``at[k]`` is tree ``k``'s first value
    (-1: no table), ``width[k]`` its distinct features (listed from ``features_at[k]`` in
    ``features``), and ``bit[n]`` a split's place in its tree's pattern.
    """

    bit: np.ndarray
    at: np.ndarray
    width: np.ndarray
    features_at: np.ndarray
    features: np.ndarray
    values: np.ndarray
    #: The leaf value of each pattern (from ``leaf_at[k]``; -1: no table): :meth:`CompiledTrees.margin_near`.
    leaf_at: np.ndarray
    leaves: np.ndarray
    #: Every tree with a split has a table (so a row's decisions give all its values).
    complete: bool = False

    @classmethod
    def empty(cls, trees: int, nodes: int) -> DecisionTables:
        none = np.full(trees, -1, dtype=np.int64)
        return cls(np.full(nodes, -1, dtype=np.int64), none, np.zeros(trees, dtype=np.int64),
                   np.zeros(trees, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), none,
                   np.zeros(0), False)

    @property
    def trees(self) -> int:
        """How many trees are looked up rather than computed."""
        return int((self.at >= 0).sum())



def _rows(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.atleast_2d(np.asarray(X, dtype=np.float64)))


# ------------------------------------------------------------------------------------ compiling
def compile_lightgbm(booster: Any, check: bool = True) -> CompiledTrees:
    """Flatten a fitted binary LightGBM booster; with ``check``, prove it equals the booster.

    Raises ``ValueError`` for what is not covered, or when the check finds any difference above 1e-9;
    never shown to a person: the caller (:func:`heartrisk.model.explain.compiled_trees`) then uses
    LightGBM's own ``pred_contrib``.
    """
    dump = booster.dump_model()
    if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("num_class", 1) != 1:
        raise ValueError("only binary (one tree per iteration) boosters are compiled")
    if booster.params.get("boosting") == "rf" or dump.get("average_output"):
        raise ValueError("random-forest mode averages its trees; not compiled")
    nodes = _Flattener(int(dump["max_feature_idx"]) + 1)
    for tree in dump["tree_info"]:
        nodes.add_tree(tree["tree_structure"])
    compiled = nodes.build()
    if check:
        _check(compiled, booster)
    return compiled


class _Flattener:
    """Collects the dumped trees' nodes into flat lists (depth first, left child first)."""

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.roots: list[int] = []
        self.columns: dict[str, list[Any]] = {k: [] for k in (
            "feature", "threshold", "default_left", "missing", "left", "right", "count", "value")}
        self.expected = 0.0
        self.max_depth = 0

    def add_tree(self, root: dict[str, Any]) -> None:
        self.roots.append(len(self.columns["feature"]))
        if "leaf_value" in root and "split_index" not in root:  # a single leaf
            self.expected += float(root["leaf_value"])
            self._node(-1, 0.0, 0, 0, -1, -1, 1.0, float(root["leaf_value"]))
            return
        leaves: list[tuple[float, float]] = []
        self._add(root, 0, leaves)
        total = float(root["internal_count"])
        self.expected += sum(value * count / total for value, count in leaves)

    def _node(self, *values: Any) -> int:
        index = len(self.columns["feature"])
        for key, value in zip(self.columns, values, strict=True):
            self.columns[key].append(value)
        return index

    def _add(self, node: dict[str, Any], depth: int, leaves: list[tuple[float, float]]) -> int:
        self.max_depth = max(self.max_depth, depth)
        if "split_index" not in node:
            leaves.append((float(node["leaf_value"]), float(node["leaf_count"])))
            return self._node(-1, 0.0, 0, 0, -1, -1, float(node["leaf_count"]), float(node["leaf_value"]))
        if node.get("decision_type", "<=") != "<=":
            raise ValueError("categorical splits are not compiled")
        index = self._node(int(node["split_feature"]), _threshold(node["threshold"]),
                           int(bool(node["default_left"])), _MISSING[str(node["missing_type"])],
                           -1, -1, float(node["internal_count"]), 0.0)
        self.columns["left"][index] = self._add(node["left_child"], depth + 1, leaves)
        self.columns["right"][index] = self._add(node["right_child"], depth + 1, leaves)
        return index

    def build(self) -> CompiledTrees:
        c = {k: np.asarray(v, dtype=np.float64 if k in ("threshold", "count", "value") else np.int64)
             for k, v in self.columns.items()}
        roots = np.asarray(self.roots, dtype=np.int64)
        nodes_t, nodes_w = _gauss_legendre(self.max_depth)
        distinct = _path_features(roots, c["feature"], c["left"], c["right"], self.max_depth)
        ends = np.r_[roots[1:], len(distinct)]
        rules = np.array([max(1, (int(distinct[a:b].max()) + 1) // 2)
                          for a, b in zip(roots, ends, strict=True)], dtype=np.int64)
        trees = CompiledTrees(self.n_features, roots, c["feature"], c["threshold"], c["default_left"],
                              c["missing"], c["left"], c["right"], c["count"], c["value"], rules,
                              nodes_t, nodes_w, self.max_depth, float(self.expected),
                              DecisionTables.empty(len(roots), len(c["feature"])))
        return replace(trees, tables=decision_tables(trees))


def decision_tables(trees: CompiledTrees, max_splits: int = TABLE_SPLITS,
                    budget: int = TABLE_BUDGET) -> DecisionTables:
    """The tables of every tree small enough (see :class:`DecisionTables`), within ``budget`` values."""
    ends = np.r_[trees.roots[1:], len(trees.feature)]
    bit = np.full(len(trees.feature), -1, dtype=np.int64)
    at = np.full(len(trees.roots), -1, dtype=np.int64)
    width = np.zeros(len(trees.roots), dtype=np.int64)
    features_at = np.zeros(len(trees.roots), dtype=np.int64)
    features: list[int] = []
    size = 0
    complete = True
    for k, (start, end) in enumerate(zip(trees.roots, ends, strict=True)):
        splits = np.flatnonzero(trees.left[start:end] >= 0) + start
        distinct = list(dict.fromkeys(trees.feature[splits].tolist()))
        cost = (1 << len(splits)) * len(distinct)
        if not 0 < len(splits) <= max_splits or size + cost > budget:
            complete &= len(splits) == 0
            continue
        bit[splits] = np.arange(len(splits))
        at[k], width[k], features_at[k] = size, len(distinct), len(features)
        features.extend(distinct)
        size += cost
    patterns = np.array([1 << int((bit[start:end] >= 0).sum()) if at[k] >= 0 else 0
                         for k, (start, end) in enumerate(zip(trees.roots, ends, strict=True))],
                        dtype=np.int64)
    leaf_at = np.where(at >= 0, np.cumsum(patterns) - patterns, -1)
    tables = DecisionTables(bit, at, width, features_at, np.asarray(features, dtype=np.int64), np.zeros(size),
                            leaf_at, np.zeros(int(patterns.sum())), complete)
    _fill_leaves(trees.roots, trees.left, trees.right, trees.value, bit, leaf_at, tables.leaves)
    _fill_tables(trees.roots, trees.rules, trees.feature, trees.threshold, trees.default_left, trees.missing,
                 trees.left, trees.right, trees.count, trees.value, trees.nodes_t, trees.nodes_w,
                 trees.max_depth, trees.n_features, tables.bit, tables.at, tables.width, tables.features_at,
                 tables.features, tables.values)
    return tables


def _threshold(dumped: float) -> float:
    """The dump writes thresholds beyond ±1e300 (LightGBM's "everything") as ±1e300 (AvoidInf)."""
    value = float(dumped)
    return np.inf if value >= 1e300 else -np.inf if value <= -1e300 else value


def _gauss_legendre(max_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``q``: the ``q``-node Gauss-Legendre rule on [0, 1] (zero-padded), exact for polynomials of
    degree < 2q. A path of m distinct features integrates a degree m-1 polynomial: q = ceil(m/2)."""
    rules = max(1, (max_depth + 1) // 2)
    nodes, weights = np.zeros((rules + 1, rules)), np.zeros((rules + 1, rules))
    for q in range(1, rules + 1):
        x, w = np.polynomial.legendre.leggauss(q)
        nodes[q, :q], weights[q, :q] = (x + 1) / 2, w / 2
    return nodes, weights


def near_rows(X: np.ndarray, rng: np.random.Generator, most_changed: int = 4) -> np.ndarray:
    """Copies of ``X[0]`` with one to ``most_changed`` columns taken from the other rows: the shape
    of a request's context rows, which :meth:`CompiledTrees.margin_near` is made for."""
    near = np.repeat(X[:1], len(X), axis=0)
    for r in range(1, len(X)):
        columns = rng.choice(X.shape[1], min(X.shape[1], rng.integers(1, most_changed + 1)), replace=False)
        near[r, columns] = X[r, columns]
    return near


def _check(compiled: CompiledTrees, booster: Any) -> None:
    """Margins and contributions equal the booster's on rows that sit on, and either side of, every
    threshold of every tree (and on 0 and NaN, the missing-value paths)."""
    rng = np.random.default_rng(0)
    X = np.empty((CHECK_ROWS, compiled.n_features))
    for j in range(compiled.n_features):
        cuts = compiled.threshold[compiled.feature == j]
        pool = np.unique(np.r_[cuts, np.nextafter(cuts, np.inf), cuts - 1, cuts + 1, 0.0, np.nan])
        # Not the cuts LightGBM puts at ±1e-35 around zero: its pred_contrib reads such an input
        # differently from its predict (5.7e-2 apart on one row here); no answer is that close to 0.
        pool = pool[(pool == 0) | ~(np.abs(pool) < 1e-30)]
        X[:, j] = rng.choice(pool, CHECK_ROWS)
    expected = booster.predict(X, pred_contrib=True)
    values, base = compiled.contributions(X)
    near = near_rows(X, rng)
    margin_gap = max(np.max(np.abs(compiled.margin(X) - booster.predict(X, raw_score=True))),
                     np.max(np.abs(compiled.margin_near(near) - booster.predict(near, raw_score=True))))
    value_gap = np.max(np.abs(values - expected[:, :-1]))
    base_gap = np.max(np.abs(base - expected[:, -1]))
    if max(margin_gap, value_gap, base_gap) > _TOLERANCE:
        raise ValueError(
            f"compiled trees differ from LightGBM (margin {margin_gap:.2e}, contributions "
            f"{value_gap:.2e}, base {base_gap:.2e})")


# ------------------------------------------------------------------------------------ kernels
@njit(cache=True, nogil=True)
def _goes_left(x: float, threshold: float, default_left: int, missing: int) -> bool:
    """LightGBM's numerical decision (tree.h ``NumericalDecision``), missing values included."""
    if np.isnan(x) and missing != 2:
        x = 0.0
    if (missing == 1 and -_ZERO < x <= _ZERO) or (missing == 2 and np.isnan(x)):
        return default_left == 1
    return x <= threshold


@njit(cache=True, nogil=True, inline="always")
def _left_bit(x: float, threshold: float, default_left: int, missing: int) -> int:
    """:func:`_goes_left` as 1 or 0 without branches: a table's pattern is made of hundreds of
    these, and as unpredictable branches they cost three times as much (29 against 9 µs a row)."""
    nan = np.isnan(x)
    x = 0.0 if nan & (missing != 2) else x
    special = ((missing == 1) & (x > -_ZERO) & (x <= _ZERO)) | ((missing == 2) & nan)
    return np.int64(default_left) if special else np.int64(x <= threshold)


@njit(cache=True, nogil=True)
def _margin(X, roots, feature, threshold, default_left, missing, left, right, value):
    out = np.zeros(X.shape[0])
    for r in range(X.shape[0]):
        total = 0.0
        for root in roots:
            n = root
            while left[n] >= 0:
                if _goes_left(X[r, feature[n]], threshold[n], default_left[n], missing[n]):
                    n = left[n]
                else:
                    n = right[n]
            total += value[n]
        out[r] = total
    return out


@njit(cache=True, nogil=True)
def _leaf(row, n, feature, threshold, default_left, missing, left, right):
    """The leaf a row ends in, from node ``n`` down."""
    while left[n] >= 0:
        n = left[n] if _goes_left(row[feature[n]], threshold[n], default_left[n], missing[n]) else right[n]
    return n


@njit(cache=True, nogil=True)
def _margin_near(X, roots, feature, threshold, default_left, missing, left, right, value, bit, leaf_at,
                 leaves, splits_at, splits, tree_of, at, width, features_at, features, table, first_values,
                 explain):
    """See :meth:`CompiledTrees.margin_near`. A tree with a leaf table keeps the first row's pattern
    of decisions; a later row re-decides only that tree's splits on the columns it changed and looks
    its leaf up. Other trees the row reaches are walked again. With ``explain`` (every tree tabled),
    the first row's SHAP values are added to ``first_values`` from the same patterns."""
    first = X[0]
    trees = len(roots)
    pattern0 = np.zeros(trees, dtype=np.int64)
    for n in range(len(feature)):
        if left[n] >= 0 and leaf_at[tree_of[n]] >= 0:
            goes = _left_bit(first[feature[n]], threshold[n], default_left[n], missing[n])
            pattern0[tree_of[n]] |= goes << bit[n]
    if explain:
        for k in range(trees):
            if at[k] >= 0:
                start = at[k] + pattern0[k] * width[k]
                for j in range(width[k]):
                    first_values[features[features_at[k] + j]] += table[start + j]
    base = np.empty(trees)
    total = 0.0
    for k in range(trees):
        if leaf_at[k] >= 0:
            base[k] = leaves[leaf_at[k] + pattern0[k]]
        else:
            base[k] = value[_leaf(first, roots[k], feature, threshold, default_left, missing, left, right)]
        total += base[k]
    pattern = pattern0.copy()
    seen = np.full(trees, -1, dtype=np.int64)
    touched = np.empty(trees, dtype=np.int64)
    out = np.empty(X.shape[0])
    out[0] = total
    for r in range(1, X.shape[0]):
        row = X[r]
        reached = 0
        for c in range(X.shape[1]):
            if row[c] == first[c] or (np.isnan(row[c]) and np.isnan(first[c])):
                continue
            for s in range(splits_at[c], splits_at[c + 1]):
                n = splits[s]
                k = tree_of[n]
                if seen[k] != r:
                    seen[k] = r
                    touched[reached] = k
                    reached += 1
                    pattern[k] = pattern0[k]
                if leaf_at[k] >= 0:
                    b = bit[n]
                    pattern[k] = (pattern[k] & ~(1 << b)) | (
                        _left_bit(row[c], threshold[n], default_left[n], missing[n]) << b)
        change = 0.0
        for i in range(reached):
            k = touched[i]
            if leaf_at[k] >= 0:
                change += leaves[leaf_at[k] + pattern[k]] - base[k]
            else:
                n = _leaf(row, roots[k], feature, threshold, default_left, missing, left, right)
                change += value[n] - base[k]
        out[r] = total + change
    return out


@njit(cache=True, nogil=True)
def _fill_leaves(roots, left, right, value, bit, leaf_at, leaves):
    """The leaf each pattern of a tabled tree ends in (bit set: go left)."""
    for k in range(len(roots)):
        if leaf_at[k] < 0:
            continue
        start = roots[k]
        end = roots[k + 1] if k + 1 < len(roots) else len(left)
        splits = 0
        for n in range(start, end):
            if left[n] >= 0:
                splits += 1
        for pattern in range(1 << splits):
            n = start
            while left[n] >= 0:
                n = left[n] if (pattern >> bit[n]) & 1 == 1 else right[n]
            leaves[leaf_at[k] + pattern] = value[n]


@njit(cache=True, nogil=True)
def _path_features(roots, feature, left, right, max_depth):
    """Per node: the number of distinct features on its path if it is a leaf, else -1."""
    distinct = np.full(len(feature), -1, dtype=np.int64)
    path = np.empty((max_depth + 2, max_depth + 1), dtype=np.int64)
    length = np.zeros(max_depth + 2, dtype=np.int64)
    stack = np.empty((2 * max_depth + 4, 2), dtype=np.int64)
    for root in roots:
        top = 0
        stack[0, 0], stack[0, 1] = root, 0
        length[0] = 0
        while top >= 0:
            n, depth = stack[top, 0], stack[top, 1]
            top -= 1
            if left[n] < 0:
                distinct[n] = length[depth]
                continue
            m = length[depth]
            for k in range(m):
                path[depth + 1, k] = path[depth, k]
            known = False
            for k in range(m):
                if path[depth, k] == feature[n]:
                    known = True
            if not known:
                path[depth + 1, m] = feature[n]
                m += 1
            length[depth + 1] = m
            for child in (right[n], left[n]):
                top += 1
                stack[top, 0], stack[top, 1] = child, depth + 1
    return distinct


@njit(cache=True, nogil=True)
def _contributions(X, out, roots, rules, feature, threshold, default_left, missing, left, right, count,
                   value, nodes_t, nodes_w, max_depth, n_features, bit, at, width, features_at, features,
                   table):
    """Each row's SHAP values: a tree with a :class:`DecisionTables` entry by its row's split pattern
    and one lookup, any other by :func:`_linear_tree`."""
    scratch = _scratch(max_depth, n_features, nodes_t.shape[1])
    ends = np.empty(len(roots), dtype=np.int64)
    ends[:-1] = roots[1:]
    ends[-1] = len(feature)
    for r in range(X.shape[0]):
        row = X[r]
        for tree in range(len(roots)):
            if at[tree] < 0:
                _linear_tree(row, -1, out[r], roots[tree], rules[tree], feature, threshold, default_left,
                             missing, left, right, count, value, nodes_t, nodes_w, bit, scratch)
                continue
            pattern = 0
            for n in range(roots[tree], ends[tree]):
                if left[n] >= 0:
                    pattern |= _left_bit(row[feature[n]], threshold[n], default_left[n], missing[n]) << bit[n]
            w = width[tree]
            base = at[tree] + pattern * w
            names = features_at[tree]
            for k in range(w):
                out[r, features[names + k]] += table[base + k]


@njit(cache=True, nogil=True)
def _fill_tables(roots, rules, feature, threshold, default_left, missing, left, right, count, value,
                 nodes_t, nodes_w, max_depth, n_features, bit, at, width, features_at, features, table):
    """Every pattern of every tabled tree, by the same kernel that explains a row."""
    scratch = _scratch(max_depth, n_features, nodes_t.shape[1])
    row = np.zeros(n_features)  # not read: the pattern decides every split
    values = np.zeros(n_features)
    ends = np.empty(len(roots), dtype=np.int64)
    ends[:-1] = roots[1:]
    ends[-1] = len(feature)
    for tree in range(len(roots)):
        if at[tree] < 0:
            continue
        splits = 0
        for n in range(roots[tree], ends[tree]):
            if left[n] >= 0:
                splits += 1
        w = width[tree]
        names = features_at[tree]
        for pattern in range(1 << splits):
            _linear_tree(row, pattern, values, roots[tree], rules[tree], feature, threshold, default_left,
                         missing, left, right, count, value, nodes_t, nodes_w, bit, scratch)
            base = at[tree] + pattern * w
            for k in range(w):
                table[base + k] = values[features[names + k]]
                values[features[names + k]] = 0.0


@njit(cache=True, nogil=True)
def _scratch(max_depth, n_features, rule_max):
    """Working arrays of :func:`_linear_tree`, made once per call (P, E, T, saved, R, z, o, z_saved,
    o_saved, share, via, stack)."""
    R = np.zeros((n_features, rule_max))
    return (np.empty((max_depth + 1, rule_max)), np.empty((max_depth + 1, rule_max)),
            np.empty((max_depth + 1, rule_max)), np.empty((max_depth + 1, rule_max)), R,
            np.ones(n_features), np.ones(n_features), np.empty(max_depth + 1), np.empty(max_depth + 1),
            np.empty(max_depth + 1), np.empty(max_depth + 1, dtype=np.int64),
            np.empty((2 * max_depth + 4, 3), dtype=np.int64))


@njit(cache=True, nogil=True)
def _linear_tree(row, pattern, out, root, rule, feature, threshold, default_left, missing,
                 left, right, count, value, nodes_t, nodes_w, bit, scratch):
    """Linear TreeSHAP of one tree, added to ``out``: one pass down and up, O(nodes x quadrature nodes).

    The row is seen only through the side it takes at each split: ``row``'s own values, or when
    ``pattern >= 0`` bit ``bit[n]`` of it (1: left) at split ``n`` (how :func:`_fill_tables` lists
    every answer a tree can give).

    Down: ``P[d]`` is the product of the path's factors ``t·o_j + (1-t)·z_j`` at the quadrature
    nodes (a repeated feature's old factor is divided out). Up: ``T[d]`` sums ``v·P`` over the node's
    leaves; for the edge into a node (feature i), the leaves below whose last split on i is that edge
    contribute ``(o_i - z_i)·∫ (T - R_i) / f_i``, where ``R_i`` holds the totals of the topmost nodes
    below that split on i again (saved and reset on the way down, restored on the way up).
    """
    P, E, T, saved, R, z, o, z_saved, o_saved, share, via, stack = scratch
    if left[root] < 0:
        return
    top = 0
    stack[0, 0], stack[0, 1], stack[0, 2] = root, 0, 0
    while top >= 0:
        n, d, leaving = stack[top, 0], stack[top, 1], stack[top, 2]
        top -= 1
        if leaving == 0:  # arriving at n
            if d == 0:
                for q in range(rule):
                    P[0, q] = 1.0
            else:
                parent = via[d]
                i = feature[parent]
                if pattern < 0:
                    goes = _goes_left(row[i], threshold[parent], default_left[parent], missing[parent])
                else:
                    goes = (pattern >> bit[parent]) & 1 == 1
                hot = goes == (n == left[parent])
                z_old, o_old = z[i], o[i]
                z_new = z_old * count[n] / count[parent]
                o_new = o_old if hot else 0.0
                first = z_old == 1.0 and o_old > 0  # the feature's first split on this path
                for q in range(rule):
                    t = nodes_t[rule, q]
                    f_new = z_new + t * (1.0 - z_new) if o_new > 0 else (1.0 - t) * z_new
                    if first:
                        P[d, q] = P[d - 1, q] * f_new
                    else:
                        f_old = z_old + t * (1.0 - z_old) if o_old > 0 else (1.0 - t) * z_old
                        P[d, q] = P[d - 1, q] * (f_new / f_old)
                    E[d, q] = f_new
                    saved[d, q] = R[i, q]
                    R[i, q] = 0.0
                z_saved[d], o_saved[d] = z_old, o_old
                z[i], o[i] = z_new, o_new
                share[d] = o_new - z_new
            if left[n] >= 0:
                for q in range(rule):
                    T[d, q] = 0.0
                top += 1
                stack[top, 0], stack[top, 1], stack[top, 2] = n, d, 1
                for child in (right[n], left[n]):
                    top += 1
                    stack[top, 0], stack[top, 1], stack[top, 2] = child, d + 1, 0
                via[d + 1] = n  # both children's parent
                continue
            for q in range(rule):
                T[d, q] = value[n] * P[d, q]
        elif d > 0:  # leaving internal node n (its children are done), inside an edge's scope
            j = feature[n]
            for q in range(rule):
                R[j, q] += T[d, q]
        if d > 0:
            parent = via[d]
            i = feature[parent]
            total = 0.0
            for q in range(rule):
                total += nodes_w[rule, q] * (T[d, q] - R[i, q]) / E[d, q]
                R[i, q] = saved[d, q]
                T[d - 1, q] += T[d, q]
            out[i] += share[d] * total
            z[i], o[i] = z_saved[d], o_saved[d]
