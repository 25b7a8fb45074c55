#!/usr/bin/env python3
"""Cascade evaluation: a labelled workload through a running gateway under three policies.

- always-strong: every question to the frontier model;
- always-weak: every question to the cheap model;
- cascade: cheap first, escalating on a low log-probability score, at each threshold of a sweep.

The models are the built-in mock's simulated ones (as in examples/cascade.toml): the cheap one is
right 70% of the time and the frontier one 92%, both calibrated (their token log-probabilities
say how sure they are, and they are right that often). Accuracy is checked against the labels;
cost is what the gateway charged (`x-tollgate-cost-usd`), checked against its own ledger
(`GET /admin/spend?by=model`). Prints the cost-accuracy table and the Pareto frontier.

    python3 benches/cascade/eval.py                 # the full workload (500 items)
    python3 benches/cascade/eval.py --items 200 --json out.json   # as CI runs it

Standard library only; needs a built `tollgate` (TOLLGATE_BIN, default target/release, then
target/debug).
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKLOAD = pathlib.Path(__file__).resolve().parent / "workload.jsonl"
KEY = "sk-demo"
ADMIN_KEY = "admin-eval-key-0123456789"
THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]

# The same models and prices as examples/cascade.toml.
CONFIG = """
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
admin_key = "{admin_key}"
pid_file = "{tmp}/tollgate.pid"
upgrade_sock = "{tmp}/upgrade.sock"
threads = 2

[spend]
data_dir = "{tmp}/data"

[providers.cheap]
kind = "mock"
headers = {{ "x-mock-accuracy" = "0.70" }}

[providers.frontier]
kind = "mock"
headers = {{ "x-mock-accuracy" = "0.92" }}

[prices."cheap/quick"]
input_per_1m = 0.15
output_per_1m = 0.60

[prices."frontier/large"]
input_per_1m = 5.0
output_per_1m = 15.0

[models.always-weak]
targets = [{{ provider = "cheap", model = "quick" }}]

[models.always-strong]
targets = [{{ provider = "frontier", model = "large" }}]

{cascades}

[[keys]]
name = "eval"
hash = "{key_hash}"
tenant = "eval"
"""

CASCADE = """
[[models."cascade@{t}".cascade.tiers]]
targets = ["cheap/quick"]
scorers = [{{ kind = "logprobs" }}]
threshold = {t}

[[models."cascade@{t}".cascade.tiers]]
targets = ["frontier/large"]
"""


def load_workload(n):
    items = [json.loads(line) for line in WORKLOAD.read_text().splitlines() if line.strip()]
    if n > len(items):
        sys.exit(f"the workload has {len(items)} items, fewer than --items {n}")
    return items[:n]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary():
    if os.environ.get("TOLLGATE_BIN"):
        return os.environ["TOLLGATE_BIN"]
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "tollgate"
        if path.exists():
            return str(path)
    sys.exit("no tollgate binary: build it (cargo build -p tollgate-cli) or set TOLLGATE_BIN")


def start(tmp, thresholds):
    port, admin = free_port(), free_port()
    key_hash = subprocess.run([binary(), "hash-key", KEY], check=True, capture_output=True,
                              text=True).stdout.strip()
    cascades = "".join(CASCADE.format(t=t) for t in thresholds)
    config = pathlib.Path(tmp) / "eval.toml"
    config.write_text(CONFIG.format(port=port, admin=admin, admin_key=ADMIN_KEY, tmp=tmp,
                                    cascades=cascades, key_hash=key_hash))
    proc = subprocess.Popen([binary(), "serve", "--config", str(config)],
                            env={**os.environ, "RUST_LOG": "warn"})
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"tollgate exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/readiness", timeout=1):
                return proc, port, admin
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("tollgate did not become ready")


ANSWER = re.compile(r"The answer is (-?\d+)")


def ask(port, model, item):
    body = json.dumps({"model": model, "max_tokens": 32,
                       "messages": [{"role": "user", "content": item["question"]}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"authorization": f"Bearer {KEY}",
                                          "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.load(resp)
        cost = float(resp.headers["x-tollgate-cost-usd"])
        cascade = resp.headers.get("x-tollgate-cascade", "")
    text = answer["choices"][0]["message"]["content"]
    found = ANSWER.search(text)
    right = bool(found) and int(found.group(1)) == item["answer"]
    return right, cost, "escalated=true" in cascade


def run_policy(port, model, items, concurrency):
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda it: ask(port, model, it), items))
    n = len(results)
    return {
        "policy": model,
        "accuracy": sum(r for r, _, _ in results) / n,
        "cost_usd": sum(c for _, c, _ in results),
        "escalated": sum(e for _, _, e in results) / n,
    }


def ledger_costs(admin):
    req = urllib.request.Request(f"http://127.0.0.1:{admin}/admin/spend?by=model",
                                 headers={"authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        report = json.load(resp)
    return {r["group"]: r for r in report["rows"]}


def pareto(rows):
    """Rows no other row beats on both cost (lower) and accuracy (higher)."""
    front = []
    for r in rows:
        if any((f["cost_usd"], f["accuracy"]) == (r["cost_usd"], r["accuracy"]) for f in front):
            continue  # the same point twice (two thresholds with no answer between them)
        dominated = any(o is not r and o["cost_usd"] <= r["cost_usd"]
                        and o["accuracy"] >= r["accuracy"]
                        and (o["cost_usd"] < r["cost_usd"] or o["accuracy"] > r["accuracy"])
                        for o in rows)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r["cost_usd"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--thresholds", default=",".join(str(t) for t in THRESHOLDS))
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",") if t]
    items = load_workload(args.items)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, admin = start(tmp, thresholds)
        try:
            models = ["always-strong", "always-weak"] + [f"cascade@{t}" for t in thresholds]
            rows = [run_policy(port, m, items, args.concurrency) for m in models]
            # The ledger is written in batches: wait until it holds every request.
            for _ in range(100):
                ledger = ledger_costs(admin)
                if all(ledger.get(m, {}).get("requests") == len(items) for m in models):
                    break
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(10)
    strong = rows[0]
    for r in rows:
        r["saved_vs_strong"] = 1 - r["cost_usd"] / strong["cost_usd"]
        r["accuracy_lost_points"] = (strong["accuracy"] - r["accuracy"]) * 100
        in_ledger = ledger.get(r["policy"], {})
        r["ledger_cost_usd"] = float(in_ledger.get("cost_usd", "nan"))
        r["ledger_saved_usd"] = float(in_ledger.get("saved_usd", "nan"))
    print(f"{len(items)} items, {len(rows)} policies, {time.time() - started:.1f} s\n")
    print(f"{'policy':<16} {'accuracy':>8} {'cost USD':>12} {'vs strong':>9} {'escalated':>9}"
          f" {'ledger saved USD':>17}")
    for r in rows:
        print(f"{r['policy']:<16} {r['accuracy']:>8.1%} {r['cost_usd']:>12.6f} "
              f"{-r['saved_vs_strong']:>+9.1%} {r['escalated']:>9.1%} "
              f"{r['ledger_saved_usd']:>17.6f}")
    front = pareto(rows)
    print("\nPareto frontier (cheapest first): " + ", ".join(
        f"{r['policy']} ({r['accuracy']:.1%}, ${r['cost_usd']:.6f})" for r in front))
    good = [r for r in rows[2:]
            if r["saved_vs_strong"] >= 0.6 and r["accuracy_lost_points"] <= 2.0]
    best = max(good, key=lambda r: r["saved_vs_strong"], default=None)
    if best:
        print(f"\nBest: {best['policy']} saves {best['saved_vs_strong']:.1%} against always-strong"
              f" and loses {best['accuracy_lost_points']:.1f} points of accuracy.")
    else:
        print("\nNo threshold saves 60% for at most 2 points of accuracy.")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"items": len(items), "rows": rows, "pareto": [r["policy"] for r in front],
             "best": best and best["policy"]}, indent=2))


if __name__ == "__main__":
    main()
