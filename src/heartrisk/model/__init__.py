"""The classifier: the estimator, how it is judged and explained, its gate and its registry.

``heartrisk.model.RiskModel`` and ``heartrisk.model.Platt`` still resolve: classifiers registered before
the package moved are cloudpickles that name them (this was one module then), and must keep loading.
They are looked up on first use, so importing e.g. the registry does not load scikit-learn.
"""

from typing import Any

_MOVED = {"RiskModel": "heartrisk.model.estimator", "Platt": "heartrisk.model.estimator"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'heartrisk.model' has no attribute {name!r}")
