"""Compatibility: synthesizer versions registered before the package moved record this module as their
MLflow loader (``loader_module: heartrisk.synth_registry`` in their MLmodel file), so it must stay."""

from heartrisk.synth.registry import _load_pyfunc

__all__ = ["_load_pyfunc"]
