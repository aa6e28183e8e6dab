"""heartrisk: a continuously learning heart-disease risk system (see DESIGN.md for the data flow)."""

__version__ = "0.1.0"
