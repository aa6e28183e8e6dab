"""The colours of the monitoring images and of the dashboard's charts: one table, so both agree."""

#: One colour per source of a row, in every volume chart.
SOURCE_COLOURS: dict[str, str] = {"kaggle": "#4c72b0", "synthetic": "#dd8452", "user": "#55a868"}
#: One colour per metric in the dashboard's performance chart.
METRIC_COLOURS: dict[str, str] = {"roc_auc": "#4c72b0", "precision": "#dd8452", "recall": "#55a868",
                                  "f1": "#c44e52"}
#: Drift bars: flagged, and within the threshold.
DRIFTED = "#c44e52"
STABLE = "#4c72b0"
