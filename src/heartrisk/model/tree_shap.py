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
  pass down and up (see :func:`_linear`).

Measured (median CPU time of one-row calls as bench/explain.py times them, 499 trees x 47 leaves, 22
deep, load average 22-26 on 2 cores, so to re-measure on an idle machine): LightGBM 8.4-9.7 ms, this
2.7-4.0 ms. Integrating each leaf on its own, with precomputed tables for short paths (Fast TreeSHAP
v2's idea), took 4.5 ms: the tables (up to 64 MB) missed the cache.

:func:`compile_lightgbm` checks margins and contributions against the booster's own ``predict`` and
``pred_contrib`` on rows that hit every threshold of every tree, and refuses a booster it does not
cover (categorical splits, linear trees, several classes), so a caller can fall back to LightGBM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

#: Rows of the compile-time check against LightGBM's own values.
CHECK_ROWS = 256
_TOLERANCE = 1e-9
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_ZERO = 1e-35  # LightGBM's kZeroThreshold


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

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw log-odds per row (the booster's ``predict(raw_score=True)``)."""
        return _margin(_rows(X), self.roots, self.feature, self.threshold, self.default_left,
                       self.missing, self.left, self.right, self.value)

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        """SHAP values per row and encoded column (raw log-odds) and the base value: the booster's
        ``pred_contrib`` split into its columns and its last one."""
        X = _rows(X)
        out = np.zeros((X.shape[0], self.n_features))
        _linear(X, out, self.roots, self.rules, self.feature, self.threshold, self.default_left, self.missing,
                self.left, self.right, self.count, self.value, self.nodes_t, self.nodes_w, self.max_depth,
                self.n_features)
        return out, self.expected_value


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
        return CompiledTrees(self.n_features, roots, c["feature"], c["threshold"], c["default_left"],
                             c["missing"], c["left"], c["right"], c["count"], c["value"], rules,
                             nodes_t, nodes_w, self.max_depth, float(self.expected))


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
    margin_gap = np.max(np.abs(compiled.margin(X) - booster.predict(X, raw_score=True)))
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
def _linear(X, out, roots, rules, feature, threshold, default_left, missing,
            left, right, count, value, nodes_t, nodes_w, max_depth, n_features):
    """Linear TreeSHAP: one pass down and up each tree, O(nodes x quadrature nodes) a row.

    Down: ``P[d]`` is the product of the path's factors ``t·o_j + (1-t)·z_j`` at the quadrature
    nodes (a repeated feature's old factor is divided out). Up: ``T[d]`` sums ``v·P`` over the node's
    leaves; for the edge into a node (feature i), the leaves below whose last split on i is that edge
    contribute ``(o_i - z_i)·∫ (T - R_i) / f_i``, where ``R_i`` holds the totals of the topmost nodes
    below that split on i again (saved and reset on the way down, restored on the way up).
    """
    rule_max = nodes_t.shape[1]
    P = np.empty((max_depth + 1, rule_max))
    E = np.empty((max_depth + 1, rule_max))
    T = np.empty((max_depth + 1, rule_max))
    saved = np.empty((max_depth + 1, rule_max))
    R = np.zeros((n_features, rule_max))
    z = np.ones(n_features)
    o = np.ones(n_features)
    z_saved = np.empty(max_depth + 1)
    o_saved = np.empty(max_depth + 1)
    share = np.empty(max_depth + 1)
    via = np.empty(max_depth + 1, dtype=np.int64)
    stack = np.empty((2 * max_depth + 4, 3), dtype=np.int64)
    for r in range(X.shape[0]):
        row = X[r]
        for tree in range(len(roots)):
            root = roots[tree]
            if left[root] < 0:
                continue
            rule = rules[tree]
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
                        hot = _goes_left(row[i], threshold[parent], default_left[parent],
                                         missing[parent]) == (n == left[parent])
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
                    out[r, i] += share[d] * total
                    z[i], o[i] = z_saved[d], o_saved[d]
