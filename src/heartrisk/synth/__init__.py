"""The CTGAN synthesizer: fitting, repairing its rows, measuring it, its gate and its registry."""
