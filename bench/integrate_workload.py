#!/usr/bin/env python3
"""Throughput over a whole generation, [S0, S1] (default the paper's [2K in, 32K out]), from decode-step
times measured at sampled depths: the step time is interpolated linearly between the sampled depths
(flat past the ends) and summed over every step, so tokens/s = R * (S1 - S0) / total time.
`specontext bench --span` validates the method against a true end-to-end run.

usage: integrate_workload.py OURS.json [--hf HF.json] [--from 2048] [--to 34816]
OURS.json is `specontext bench --json`; HF.json is bench/hf_baseline.py --json (each request count
integrated on its own; the best is the baseline)."""
import argparse
import bisect
import json


def integrate(points, s0, s1):
    pts = sorted(points)
    xs = [p[0] for p in pts]
    total = 0.0
    for s in range(s0, s1):
        i = bisect.bisect_left(xs, s)
        if i == 0:
            total += pts[0][1]
        elif i == len(pts):
            total += pts[-1][1]
        else:
            (x0, y0), (x1, y1) = pts[i - 1], pts[i]
            total += y0 + (y1 - y0) * (s - x0) / (x1 - x0)
    return total / 1e3  # seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("--hf")
    ap.add_argument("--from", dest="s0", type=int, default=2048)
    ap.add_argument("--to", dest="s1", type=int, default=2048 + 32768)
    a = ap.parse_args()
    ours = json.load(open(a.ours))
    by_r = {}
    for p in ours["points"]:
        if p["fits"]:
            by_r.setdefault(p["requests"], []).append((p["depth"], p["median_ms"]))
    out = {"from": a.s0, "to": a.s1, "ours": {}, "hf": {}}
    for r, pts in by_r.items():
        t = integrate(pts, a.s0, a.s1)
        out["ours"][r] = {"seconds": t, "tokens_per_s": r * (a.s1 - a.s0) / t, "sampled_depths": sorted(x for x, _ in pts)}
    if a.hf:
        hf = json.load(open(a.hf))
        hby = {}
        for p in hf["points"]:
            if p["status"] == "ok":
                hby.setdefault((p["attn"], p["requests"]), []).append((p["depth"], p["median_ms"]))
        for (attn, r), pts in hby.items():
            t = integrate(pts, a.s0, a.s1)
            out["hf"][f"{attn} R={r}"] = {"seconds": t, "tokens_per_s": r * (a.s1 - a.s0) / t, "sampled_depths": sorted(x for x, _ in pts)}
        best_hf = max(v["tokens_per_s"] for v in out["hf"].values())
        best_ours = max(v["tokens_per_s"] for v in out["ours"].values())
        out["ratio_best_ours_to_best_hf"] = best_ours / best_hf
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
