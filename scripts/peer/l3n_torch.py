"""PyTorch peer of cht's node-based link prediction (the peer benchmark of scripts/bench_peer.sh;
a development tool, not a test).

CH2-L3n scores of a random `rows × cols` mask by the official code's dense formula
(docs: the algorithm spec §1.2): DD = D·Dᵀ, TT = Dᵀ·D, external degrees from the row/column
degrees, node weights (C + B) / (E + 1), S = Q_DT·D + (Q_TD·Dᵀ)ᵀ, existing links masked out.
Prints one JSON line per (shape, density): the median wall time of `--runs` runs.
"""
import argparse
import json
import statistics
import time

import torch


def ch2_l3n(d):
    dd, tt = d @ d.T, d.T @ d
    bdd, btt = (dd != 0).float(), (tt != 0).float()
    rowdeg, coldeg = d.sum(1), d.sum(0)
    # The degree is indexed by the second index (the local-community node), not the seed.
    e_dt = ((rowdeg[None, :] - dd) * bdd).clamp_min(1) - 1
    e_td = ((coldeg[None, :] - tt) * btt).clamp_min(1) - 1
    q_dt = (dd + bdd) / (e_dt + 1)
    q_td = (tt + btt) / (e_td + 1)
    s = q_dt @ d + (q_td @ d.T).T
    return s * (1 - d)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cases", default="2048x5461@0.1,2048x5461@0.3")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    for case in a.cases.split(","):
        shape, density = case.split("@")
        rows, cols = (int(x) for x in shape.split("x"))
        d = (torch.rand(rows, cols) < float(density)).float()
        times = []
        for _ in range(a.runs):
            start = time.perf_counter()
            s = ch2_l3n(d)
            s.sum().item()
            times.append(time.perf_counter() - start)
        print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads": a.threads,
                          "predictor": "ch2-l3n", "rows": rows, "cols": cols,
                          "density": float(density), "seconds": statistics.median(times)}))


if __name__ == "__main__":
    main()
