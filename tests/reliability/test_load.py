"""Load from another process on loopback: 500 predictions and 200 submissions at once against the real
`heartrisk serve`: no 5xx, every submission stored exactly once. (The load raises the rate limit: one
process stands in for many clients; tests/reliability/test_abuse.py shows the default limit biting.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from heartrisk.config import Settings
from support.reliability import REPO, served
from support.web import copy_home, stored_submissions

pytestmark = pytest.mark.reliability


def load(url: str, predictions: int, submissions: int, concurrency: int = 32) -> dict[str, Any]:
    """bench/load.py's client, as its own process."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "load.py"), "client", "--url", url,
                           "--predictions", str(predictions), "--submissions", str(submissions),
                           "--concurrency", str(concurrency)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_500_predictions_and_200_submissions_at_once(trained_home: Settings, tmp_path: Path) -> None:
    home = copy_home(trained_home, tmp_path / "home")
    with served(home, tmp_path / "serve.log", HEARTRISK_SUBMISSION_LIMIT="1000") as server:
        result = load(server.url, 500, 200)
    records = result.pop("records")
    print("\nunder load:", json.dumps(result))
    assert result["server_errors"] == 0
    assert result["predict"]["statuses"] == {"200": 500}
    assert result["submission"]["statuses"] == {"201": 200}
    acknowledged = {r["submission_id"]: r["bmi"] for r in records if r.get("submission_id")}
    stored = stored_submissions(home)
    assert len(stored) == 200 and stored["submission_id"].is_unique
    assert set(stored["submission_id"]) == set(acknowledged)
    for row in stored.itertuples():  # each row holds what its own request sent
        assert row.bmi == pytest.approx(acknowledged[row.submission_id])
