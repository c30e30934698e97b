#!/usr/bin/env python3
"""Builds the MLP results table (Markdown) from runs/*/summary.json and metrics.jsonl, with the
paper's Table 7 numbers beside ours. Usage: scripts/results_table.py [RUNS_DIR]"""
import json
import os
import statistics
import sys

PAPER = {  # spec §8.1 (paper Table 7): accuracy % ± s.e. over 3 seeds, [ANP]
    ("mnist", "fc"): ("98.78±0.02", None), ("fashion-mnist", "fc"): ("90.88±0.02", None),
    ("mnist", "chts-p"): ("98.81±0.04", "20%"), ("fashion-mnist", "chts-p"): ("90.93±0.03", "89%"),
    ("mnist", "chts-n"): ("98.76±0.05", "27%"), ("fashion-mnist", "chts-n"): ("90.67±0.05", "73%"),
    ("mnist", "cht"): ("98.48±0.04", "29%"), ("fashion-mnist", "cht"): ("88.70±0.07", "30%"),
    ("mnist", "rigl"): ("98.61±0.01", "29%"), ("fashion-mnist", "rigl"): ("89.91±0.07", "55%"),
    ("mnist", "set"): ("98.14±0.02", "100%"), ("fashion-mnist", "set"): ("89.00±0.09", "100%"),
    ("mnist", "chtss-n"): ("98.83±0.02", "32%"), ("fashion-mnist", "chtss-n"): ("90.81±0.11", "40%"),
    ("mnist", "granet"): ("98.81±0.00", "35%"), ("fashion-mnist", "granet"): ("89.98±0.06", "53%"),
    ("mnist", "gmp"): ("98.62±0.03", "58%"), ("fashion-mnist", "gmp"): ("90.29±0.19", "69%"),
}
ORDER = ["fc", "chts-p", "chts-n", "cht", "rigl", "set", "chtss-n", "granet", "gmp", "mest"]

runs = sys.argv[1] if len(sys.argv) > 1 else "runs"
rows = {}
for name in sorted(os.listdir(runs)):
    if name.startswith("ablation-"):
        continue  # variants of a preset are reported separately
    path = os.path.join(runs, name, "summary.json")
    if not os.path.isfile(path):
        continue
    s = json.load(open(path))
    metrics = [json.loads(l) for l in open(os.path.join(runs, name, "metrics.jsonl")) if l.strip()]
    rows.setdefault((s["dataset"], s["method"]), []).append((s, metrics))

def fmt(values, scale=100.0):
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    se = statistics.stdev(values) / len(values) ** 0.5
    return f"{statistics.mean(values):.2f}±{se:.2f}"

print("| data set | method | epochs | seeds | final acc % | best acc % | ANP (final) | paper acc % [ANP] | s / epoch |")
print("|---|---|---|---|---|---|---|---|---|")
for dataset in ["mnist", "fashion-mnist"]:
    for method in ORDER:
        got = rows.get((dataset, method))
        paper = PAPER.get((dataset, method))
        paper_text = "–" if paper is None else (paper[0] + (f" [{paper[1]}]" if paper[1] else ""))
        if not got:
            continue
        epochs = sorted({s["epochs"] for s, _ in got})
        finals = [s["final_test_acc"] for s, _ in got]
        bests = [s["best_test_acc"] for s, _ in got]
        anps = [s["final_anp"] for s, _ in got if s.get("final_anp") is not None]
        anp = f"{statistics.mean(anps) * 100:.0f}%" if anps else "100%"
        secs = statistics.mean(s["mean_epoch_s"] for s, _ in got)
        seeds = ",".join(str(s["seed"]) for s, _ in got)
        print(f"| {dataset} | {method} | {'/'.join(map(str, epochs))} | {seeds} | {fmt(finals)} | {fmt(bests)} | {anp} | {paper_text} | {secs:.1f} |")
