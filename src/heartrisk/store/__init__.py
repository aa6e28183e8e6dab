"""The feature store: Delta tables with a fixed schema (feature groups) and views over them."""
