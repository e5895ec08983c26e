"""scripts/calibration_table.py: each row's training epochs and temperature fit are its own checkpoint's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "calibration_table.py"


def load_script():
    spec = importlib.util.spec_from_file_location("calibration_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result_rows(sha: str, epochs: int, fit: str, ece: float) -> list[dict]:
    about = {"suite": "calibration", "checkpoint_sha256": sha, "result_dir": f"results/resnet8-{sha[:12]}/calibration",
             "model_name": f"resnet8-{sha[:12]}", "method": "kd", "seed": 0,
             "training": json.dumps({"epochs": epochs}), "protocol": json.dumps({"temperature_fit": fit})}
    return [{**about, "metric": "ece", "value": ece}, {**about, "metric": "temperature", "value": 1.0 + ece}]


def test_rows_keep_their_own_epochs_and_fit_when_database_order_differs_from_checkpoint_order(monkeypatch):
    script = load_script()
    # The database lists the 10-epoch "b..." checkpoint first; the pivot sorts "a..." (30 epochs) first.
    rows = pd.DataFrame(result_rows("b" * 64, 10, "cross-fit", 0.1) + result_rows("a" * 64, 30, "folder", 0.3))
    monkeypatch.setattr(script, "read_results", lambda db: rows)
    table = script.calibration_table(Path("unused.db")).set_index("checkpoint_sha256")
    assert table.loc["b" * 12, "epochs"] == 10 and table.loc["a" * 12, "epochs"] == 30
    assert table.loc["b" * 12, "temperature_fit"] == "cross-fit" and table.loc["a" * 12, "temperature_fit"] == "folder"
    assert table.loc["a" * 12, "ece"] == 0.3 and table.loc["a" * 12, "temperature"] == 1.3
