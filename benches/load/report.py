"""Turns the load bench's JSON lines into a table and the Tollgate/nginx ratios."""

import json
import sys


def main() -> None:
    path, rates = sys.argv[1], [int(r) for r in sys.argv[2].split()]
    rows: dict[str, dict] = {}
    for line in open(path):
        r = json.loads(line)
        row = rows.setdefault(r["target"], {})
        if r["kind"] == "saturation":
            s = r["oha"]["summary"]
            row["rps"] = s["requestsPerSec"]
            row["ok"] = s["successRate"]
        elif r["kind"] == "rate":
            p = r["oha"]["latencyPercentiles"]
            row[f"p50@{r['rate']}"] = p["p50"] * 1000
            row[f"p99@{r['rate']}"] = p["p99"] * 1000
        else:
            row["ttft_p50"] = r["ttft"]["p50_ms"]
            row["ttft_p99"] = r["ttft"]["p99_ms"]
    cols = ["rps"] + [f"p{q}@{r}" for r in rates for q in (50, 99)] + ["ttft_p50", "ttft_p99"]
    heads = ["saturation req/s"] + [f"p{q} ms @{r}/s" for r in rates for q in (50, 99)] + ["TTFT p50 ms", "TTFT p99 ms"]
    print("| target | " + " | ".join(heads) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for target in ("mock", "nginx", "tollgate"):
        row = rows.get(target, {})
        cells = [f"{row['rps']:.0f}" if c == "rps" else f"{row.get(c, float('nan')):.3f}" for c in cols]
        print(f"| {target} | " + " | ".join(cells) + " |")
    t, n, m = rows["tollgate"], rows["nginx"], rows["mock"]
    print()
    print(f"throughput tollgate/nginx: {t['rps'] / n['rps']:.2f}x (target >= 0.7)")
    for r in rates:
        added_t = t[f"p50@{r}"] - m[f"p50@{r}"]
        added_n = n[f"p50@{r}"] - m[f"p50@{r}"]
        ratio = added_t / added_n if added_n > 0 else float("inf")
        print(f"added p50 @{r}/s: tollgate {added_t:.3f} ms, nginx {added_n:.3f} ms, ratio {ratio:.2f} (target <= 1.3)")
    print(f"TTFT overhead vs mock (p50): tollgate {t['ttft_p50'] - m['ttft_p50']:.3f} ms, "
          f"nginx {n['ttft_p50'] - m['ttft_p50']:.3f} ms (target <= 1 ms)")


if __name__ == "__main__":
    main()
