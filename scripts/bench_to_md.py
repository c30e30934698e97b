#!/usr/bin/env python3
"""Turns `cht bench kernels --json` output (stdin) into the Markdown tables of docs/BENCHMARKS.md."""
import json
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]
by_backend = {}
for r in rows:
    by_backend.setdefault((r["backend"], r["adapter"]), []).append(r)

for (backend, adapter), rs in by_backend.items():
    print(f"\n### {backend}: {adapter}\n")
    totals = [r for r in rs if r.get("op") == "fwd+dX+dW"]
    print("forward + dX + dW, milliseconds (median); ratio = dense / sparse\n")
    print("| layer | batch | density | sparse (CSR) | masked-dense | dense | dense/sparse |")
    print("|---|---|---|---|---|---|---|")
    for r in totals:
        print(f"| {r['in']}→{r['out']} | {r['batch']} | {r['density']*100:g} % | {r['sparse_ms']:.3f} | "
              f"{r['masked_ms']:.3f} | {r['dense_ms']:.3f} | {r['dense_ms']/r['sparse_ms']:.1f}× |")
    print()
    for r in rs:
        if "crossover_density" in r:
            c = r["crossover_density"]
            text = f"sparse faster up to {c*100:g} % (highest measured density where it still wins)" if c is not None else "dense faster at every measured density"
            print(f"- crossover {r['in']}→{r['out']}, batch {r['batch']}: {text}")
    print("\nPer operation (ms):\n")
    print("| op | layer | batch | density | sparse | masked | dense |")
    print("|---|---|---|---|---|---|---|")
    for r in rs:
        if r.get("op") in ("forward", "dX", "dW"):
            print(f"| {r['op']} | {r['in']}→{r['out']} | {r['batch']} | {r['density']*100:g} % | "
                  f"{r['sparse_ms']:.3f} | {r['masked_ms']:.3f} | {r['dense_ms']:.3f} |")
