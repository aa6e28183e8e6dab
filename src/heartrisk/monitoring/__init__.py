"""Monitoring: how the champion does on new rows and whether the data moved since it was trained."""
