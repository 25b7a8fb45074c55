"""The cascade evaluation harness (benches/cascade/eval.py) at CI size: 200 of its 500 labelled
items through a running gateway under always-strong, always-weak and a threshold sweep. The
simulated models make the outcome deterministic, so the figures it must reach are asserted:
the simulated models' accuracies, a cascade that saves at least 60% against always-strong for at
most 2 points of accuracy, and the gateway's ledger agreeing with the costs it charged."""

import json
import os
import pathlib
import subprocess
import sys
import time

from conftest import ROOT, binary


def test_the_cascade_evaluation_runs_and_a_threshold_pays_off(tmp_path):
    out = tmp_path / "eval.json"
    started = time.time()
    subprocess.run([sys.executable, str(ROOT / "benches" / "cascade" / "eval.py"),
                    "--items", "200", "--thresholds", "0.3,0.5,0.8,0.95",
                    "--json", str(out)],
                   check=True, env={**os.environ, "TOLLGATE_BIN": binary()}, timeout=60)
    assert time.time() - started < 60
    result = json.loads(out.read_text())
    rows = {r["policy"]: r for r in result["rows"]}
    strong, weak = rows["always-strong"], rows["always-weak"]
    assert 0.86 <= strong["accuracy"] <= 0.98, strong
    assert 0.62 <= weak["accuracy"] <= 0.78, weak
    assert weak["cost_usd"] < strong["cost_usd"] / 10
    # More of the cheap tier's answers escalate as the threshold rises.
    sweep = [rows[f"cascade@{t}"] for t in ("0.3", "0.5", "0.8", "0.95")]
    assert [r["escalated"] for r in sweep] == sorted(r["escalated"] for r in sweep)
    assert result["best"], result
    best = rows[result["best"]]
    assert best["saved_vs_strong"] >= 0.6 and best["accuracy_lost_points"] <= 2.0, best
    # The ledger charged what the answers said they cost, and its savings figure agrees.
    for r in result["rows"]:
        assert abs(r["ledger_cost_usd"] - r["cost_usd"]) < 1e-9, r
        if r["policy"].startswith("cascade@"):
            assert r["ledger_saved_usd"] > 0, r
    assert "always-weak" in result["pareto"]
