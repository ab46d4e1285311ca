"""Tests of make_figures.py on small synthetic inputs generated here.

    /usr/bin/python3 -m unittest discover -s analysis -p 'test_*.py'

Every number below is made up (SYNTHETIC); none comes from the simulator.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "make_figures.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, HERE)
from results import COLUMNS  # noqa: E402
from attention import normalise_accuracy, SIM_COLUMNS, pareto_front  # noqa: E402

SYSTEMS = [("hf-eager", ""), ("hf-flash", ""), ("flashinfer", ""), ("quest", ""),
           ("clusterkv", ""), ("shadowkv", ""), ("specontext", "c1"),
           ("specontext", "c1,c2"), ("specontext", "c1,c2,c3")]
SPEED = {"hf-eager": 1.0, "hf-flash": 1.3, "flashinfer": 4.0, "quest": 2.5, "clusterkv": 2.2,
         "shadowkv": 5.0, "c1": 5.5, "c1,c2": 7.0, "c1,c2,c3": 9.0}


def _row(exp, hw, variant, model, system, comps, budget, wl, mode, r, feasible, thr,
         reason=""):
    i, o = wl
    return {
        "experiment": exp, "hardware": hw, "hardware_variant": variant, "model": model,
        "system": system, "components": comps, "budget": budget, "input": i, "output": o,
        "requests_mode": mode, "requests": r, "gpu_mem_bytes": 80000000000,
        "overlap": "true", "feasible": "true" if feasible else "false", "reason": reason,
        "throughput_tok_s": "%.3f" % thr if feasible else "",
        "decode_throughput_tok_s": "%.3f" % (thr * 1.05) if feasible else "",
        "prefill_s": "1.5" if feasible else "", "decode_s": "100.0" if feasible else "",
        "peak_gpu_bytes": int(30e9 + r * 1.5e9) if feasible else "",
        "peak_host_bytes": int(5e9 * r) if feasible else "",
        "h2d_bytes_per_step": int(2.5e6 * r) if feasible and system != "hf-eager" else 0,
        "mean_step_ms": "%.3f" % (1000.0 * r / thr) if feasible else "",
        "integration_rel_err": "0.001",
    }


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow(r)


def throughput_rows(exp, hw, model, workloads, base_tok_s):
    rows = []
    for wl in workloads:
        longness = (wl[0] + wl[1]) / 18432.0
        for system, comps in SYSTEMS:
            k = SPEED[comps or system]
            for mode in ("fixed", "best"):
                r = 1 if mode == "fixed" else int(max(1, 4 * k / longness))
                feasible, reason = True, ""
                if mode == "best" and system in ("quest", "clusterkv"):
                    feasible, reason = False, "unsupported: single request only"
                if system == "hf-eager" and wl[1] >= 32768 and mode == "best":
                    feasible, reason = False, "out of GPU memory: KV needs 96.1 GB > 80 GB"
                thr = base_tok_s * k * (r ** 0.6) / longness
                budget = "" if system in ("hf-eager", "hf-flash", "flashinfer") else 2048
                rows.append(_row(exp, hw, "", model, system, comps, budget, wl, mode, r,
                                 feasible, thr, reason))
    return rows


REPLAY_POLICIES = ("oracle", "specontext", "specontext-batch", "quest", "streaming")
# Recall at B=16 and its growth per doubling of the budget (SYNTHETIC).
RECALL_BASE = {"oracle": (0.80, 0.04), "specontext": (0.45, 0.07),
               "specontext-batch": (0.50, 0.06), "quest": (0.40, 0.09),
               "streaming": (0.55, 0.04)}


def replay_doc(name, budgets, layers, overlap=True, policies=REPLAY_POLICIES):
    """A SYNTHETIC `specontext replay --json` document."""
    results = []
    for p in policies:
        base, step = RECALL_BASE[p]
        for b in budgets:
            k = len([x for x in budgets if x < b])
            mean = min(0.99, base + step * k)
            results.append({
                "policy": p, "budget": b,
                "recall": {"mean": mean, "min": mean - 0.2, "max": min(1.0, mean + 0.08),
                           "p10": mean - 0.06, "p90": min(1.0, mean + 0.05),
                           "per_layer": [min(1.0, mean + 0.03 * (l % 3) - 0.02)
                                         for l in range(layers)]},
                "overlap": (0.99 if p == "streaming" else 0.4 + 0.05 * k) if overlap else None,
                "selected": float(b),
                "load_bytes_per_step": 1.5e5 * b * (1.0 - (0.4 + 0.05 * k)),
            })
    header = {"format": "specontext-trace", "version": 1, "model": "models/smollm2/x.gguf",
              "draft": "models/smollm2-eagle3 (eagle input)", "task": name.split("-")[0],
              "prompt_source": "synthetic", "backend": "cpu", "config_hash": "0123abcd",
              "layers": layers, "q_heads": 9, "kv_heads": 3, "head_dim": 64,
              "b_max": budgets[-1], "prompt_tokens": 2040, "max_new": 8, "requests": 4,
              "policies": [{"name": p, "per_layer": p == "quest", "head_level": True,
                            "page_size": 16 if p == "quest" else 1}
                           for p in policies if p != "oracle"],
              "extra": {"synthetic": True}}
    return {"file": "traces/%s.trace" % name, "target": "llama-3.1-8b", "trace": header,
            "results": results}


# (policy, budget, throughput, recall) on a800-80g; the non-dominated ones, by throughput:
PARETO_POINTS = [
    ("specontext", 256, 100.0, 0.60), ("specontext", 512, 80.0, 0.70),
    ("specontext", 1024, 60.0, 0.82), ("quest", 256, 90.0, 0.55), ("quest", 512, 70.0, 0.75),
    ("quest", 1024, 50.0, 0.80), ("streaming", 256, 120.0, 0.40),
    ("streaming", 512, 100.0, 0.45), ("oracle", 512, 80.0, 0.70),
    ("oracle", 1024, None, 0.95),     # infeasible
]
PARETO_FRONT = [("specontext", 1024), ("quest", 512), ("specontext", 512),
                ("specontext", 256), ("streaming", 256)]


def trace_sims_rows():
    rows = []
    hw_scale = (("a800-80g", 1.0, 2.5e10), ("rtx4060-laptop", 0.2, 1.6e10))
    for hw, scale, bw in hw_scale:
        for policy, budget, thr, recall in PARETO_POINTS:
            if hw != "a800-80g" and policy == "streaming":
                continue
            feasible = thr is not None and not (hw == "rtx4060-laptop" and budget == 1024)
            h2d = 2.0e6 * budget / 256.0 * (0.3 if policy == "specontext" else 1.0)
            system = "specontext" if policy != "quest" else "quest"
            rows.append({
                "trace": "passkey-2k", "policy": policy, "system": system,
                "components": "c1,c2,c3" if system == "specontext" else "",
                "hardware": hw, "model": "llama-3.1-8b", "input": 2048, "output": 16384,
                "requests": 8, "budget": budget, "trace_budget": budget // 16,
                "recall": recall, "overlap": 0.5, "feasible": 1 if feasible else 0,
                "reason": "" if feasible else "out of GPU memory",
                "throughput_tok_s": thr * scale if feasible else "",
                "decode_throughput_tok_s": thr * scale * 1.05 if feasible else "",
                "mean_step_ms": 1000.0 * 8 / (thr * scale) if feasible else "",
                "h2d_bytes_per_step": h2d if feasible else "",
                "prefetch_ms": 1e3 * h2d / bw if feasible else "",
                "peak_gpu_bytes": 4e10 if feasible else "",
            })
    return rows


def accuracy_docs():
    """Two SYNTHETIC accuracy files; the second has no dense row of its own."""
    rows = [{"policy": "full", "budget": None, "context": 2048, "accuracy": 0.8,
             "overlap_rate": None, "backend": "cpu", "seed": 0, "trials": 10},
            {"policy": "full", "budget": None, "context": 4096, "accuracy": 0.5,
             "overlap_rate": None, "backend": "cpu", "seed": 0, "trials": 10}]
    for ctx, full in ((2048, 0.8), (4096, 0.5)):
        for p, f in (("oracle", 1.0), ("specontext", 0.75), ("streaming", 0.25)):
            for b in (256, 512):
                rows.append({"policy": p, "budget": b, "context": ctx,
                             "accuracy": round(full * f * (1.0 if b == 512 else 0.875), 4),
                             "overlap_rate": 0.5, "backend": "cpu", "seed": 0,
                             "trials": [{"trial": i} for i in range(10)]})
    first = {"what": "SYNTHETIC accuracy", "command": "none", "machine": "none", "rows": rows}
    head = []
    for mode, acc in (("embed", 0.2), ("eagle", 0.6)):
        for b in (256, 512):
            head.append({"policy": "specontext", "head_input": mode, "budget": b,
                         "context": 2048, "trials": 10, "accuracy": acc, "overlap_rate": 0.5,
                         "correct": 6, "backend": "cpu", "seed": 0, "dlm_rope": "native"})
    second = {"what": "SYNTHETIC head input", "command": "none", "machine": "none",
              "rows": head}
    return {"acc_cpu": first, "acc_headinput": second}


def make_attention_inputs(root):
    """The SYNTHETIC attention replays, trace-sims.csv and accuracy files under root."""
    for d in ("attention", "accuracy", "csv"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    docs = {"passkey-2k": replay_doc("passkey-2k", [16, 32, 64, 128, 256, 512, 1000], 6),
            "qa-single": replay_doc("qa-single", [16, 64, 256], 4, overlap=False,
                                    policies=("oracle", "specontext", "streaming"))}
    for name, doc in docs.items():
        with open(os.path.join(root, "attention", name + ".replay.json"), "w") as f:
            json.dump(doc, f, indent=1)
    with open(os.path.join(root, "csv", "trace-sims.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(SIM_COLUMNS))
        w.writeheader()
        for r in trace_sims_rows():
            w.writerow(r)
    for name, doc in accuracy_docs().items():
        with open(os.path.join(root, "accuracy", name + ".json"), "w") as f:
            json.dump(doc, f, indent=1)


def make_side_by_side(root, name="step3"):
    """A SYNTHETIC measured-beside-predicted step (bench/trace_side_by_side.py's layout): pid 1
    measured (NVTX ranges, kernels on streams 7 and 8 tagged with their range), pid 2 predicted."""
    os.makedirs(os.path.join(root, "measured"), exist_ok=True)
    ev = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "measured: synthetic"}},
          {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "predicted: synthetic"}},
          {"ph": "M", "name": "thread_name", "pid": 1, "tid": 7, "args": {"name": "stream 7"}},
          {"ph": "M", "name": "thread_name", "pid": 2, "tid": 1, "args": {"name": "GPU compute"}},
          {"ph": "X", "name": "step 3", "cat": "nvtx", "pid": 1, "tid": 1000000000, "ts": 0,
           "dur": 1000, "args": {"depth": 0}},
          {"ph": "X", "name": "layer 0", "cat": "nvtx", "pid": 1, "tid": 1000000000, "ts": 10,
           "dur": 300, "args": {"depth": 1}},
          {"ph": "X", "name": "attention", "cat": "nvtx", "pid": 1, "tid": 1000000000, "ts": 10,
           "dur": 100, "args": {"depth": 2}},
          {"ph": "X", "name": "void ns::(anonymous namespace)::decode_kernel<true>(ns::Params)", "cat": "kernel", "pid": 1, "tid": 7,
           "ts": 50, "dur": 200, "args": {"nvtx": "step 3/layer 0/attention"}},
          {"ph": "X", "name": "lm_head", "cat": "kernel", "pid": 1, "tid": 7, "ts": 400,
           "dur": 500, "args": {"nvtx": "step 3"}},
          {"ph": "X", "name": "gather", "cat": "kernel", "pid": 1, "tid": 8, "ts": 60,
           "dur": 300, "args": {"nvtx": "step 3/prefetch"}},
          {"ph": "X", "name": "attn L0", "cat": "attention", "pid": 2, "tid": 1, "ts": 0,
           "dur": 800, "args": {"critical": True}}]
    doc = {"traceEvents": ev, "otherData": {"measured_host_ms": 1.0, "measured_gpu_ms": 0.9,
                                            "predicted_ms": 0.8}}
    path = os.path.join(root, "measured", name + ".trace.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def make_engine_pareto(root):
    """A SYNTHETIC measured-throughput table (bench/engine_pareto_rows.py's layout) at 16K, R = 32."""
    os.makedirs(os.path.join(root, "engine"), exist_ok=True)
    rows = [{"policy": "full", "budget": None, "tokens_per_s": 1000.0}]
    for policy, budget, tps in (("specontext", 2048, 3000.0), ("specontext", 4096, 2500.0),
                                ("streaming", 2048, 3500.0), ("streaming", 4096, 3200.0),
                                ("quest", 2048, 2800.0)):
        rows.append({"policy": policy, "budget": budget, "tokens_per_s": tps})
    for r in rows:
        ms = 32 * 1e3 / r["tokens_per_s"]
        r.update({"depth": 16384, "requests": 32, "median_ms": ms, "min_ms": ms * 0.99,
                  "max_ms": ms * 1.01, "overlap": 0.8 if r["policy"] == "specontext" else None})
    doc = {"what": "SYNTHETIC engine throughput", "command": "none", "machine": "none", "rows": rows}
    path = os.path.join(root, "engine", "engine_pareto.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def make_synthetic_inputs(root, attention=True):
    """Write a small SYNTHETIC `specontext reproduce` output tree under root (without the
    attention inputs when attention is False: an older reproduce's output)."""
    if attention:
        make_attention_inputs(root)
    for d in ("csv", "plans", "traces"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    wls = [(2048, 16384), (2048, 32768), (16384, 2048), (32768, 2048)]
    _write_csv(os.path.join(root, "csv", "cloud-throughput.csv"),
               throughput_rows("cloud-throughput", "a800-80g", "llama-3.1-8b", wls, 30.0))
    _write_csv(os.path.join(root, "csv", "edge-throughput.csv"),
               throughput_rows("edge-throughput", "rtx4060-laptop", "reasoning-llama-3.2-1b",
                               wls[:2], 12.0))
    sweep = []
    for system, comps in SYSTEMS:
        for b in (32, 64, 128, 256, 512, 1024, 2048, 4096):
            if system in ("hf-eager", "hf-flash", "flashinfer") and b != 2048:
                continue
            k = SPEED[comps or system]
            thr = 40.0 * k / (1.0 + b / 2048.0)
            feasible = not (system == "shadowkv" and b == 4096)
            sweep.append(_row("budget-sweep", "a800-80g", "", "llama-3.1-8b", system, comps,
                              "" if system in ("hf-eager", "hf-flash", "flashinfer") else b,
                              (2048, 16384), "fixed", 1, feasible, thr,
                              "" if feasible else "out of GPU memory"))
    _write_csv(os.path.join(root, "csv", "budget-sweep.csv"), sweep)
    links = [("h200", "pcie3-x16", 1.0), ("h200", "pcie4-x16", 1.6), ("h200", "pcie5-x16", 2.2),
             ("gh200", "nvlink-c2c", 4.0)]
    what = []
    for hw, var, lk in links:
        for system, comps in [("flashinfer", ""), ("shadowkv", ""), ("specontext", "c1,c2,c3")]:
            k = SPEED[comps or system]
            feasible = not (system == "flashinfer" and var == "pcie3-x16")
            what.append(_row("host-link-whatif", hw, var, "llama-3.1-8b", system, comps,
                             2048, (2048, 32768), "best", 8, feasible,
                             20 * k * (lk ** (0.2 if system == "flashinfer" else 0.5)),
                             "" if feasible else "out of GPU memory"))
    _write_csv(os.path.join(root, "csv", "host-link-whatif.csv"), what)

    for name, r, cut in (("llama-3.1-8b_a800-80g_R32", 32, 9), ("llama-3.1-8b_h200_R16", 16, 20)):
        L = 32
        thresholds = [20000 + l * 2800 * (32.0 / r) for l in range(L - cut + 1)]
        thresholds = [int(t) for t in thresholds] + [None] * (cut)
        segs = [{"from": 0, "to": thresholds[0], "gpu_layers": L, "cpu_layers": 0}]
        for l in range(L - cut):
            segs.append({"from": thresholds[l], "to": thresholds[l + 1],
                         "gpu_layers": L - l - 1, "cpu_layers": l + 1})
        segs[-1]["to"] = segs[-1]["from"] + 8192
        plan = {"model": "llama-3.1-8b", "hardware": name.split("_")[1], "requests": r,
                "budget": 2048, "gpu_memory_bytes": 80e9, "layers": L,
                "thresholds": thresholds, "layers_on_gpu_at": segs,
                "bytes": {"weights": 16e9, "kv_per_token_layer": 131072}}
        with open(os.path.join(root, "plans", name + ".json"), "w") as f:
            json.dump(plan, f)

    for name, offload in (("specontext_a800_R32", True), ("shadowkv_a800_R1", False)):
        ev = [{"ph": "M", "name": "thread_name", "pid": 1, "tid": t, "args": {"name": n}}
              for t, n in ((0, "host CPU"), (1, "GPU compute"), (2, "host link H2D"),
                           (3, "host link D2H"))]
        ts = 0.0
        ev.append({"ph": "X", "name": "schedule", "cat": "host", "tid": 0, "pid": 1, "ts": 0,
                   "dur": 40, "args": {"critical": True}})
        ts = 40.0
        ev.append({"ph": "X", "name": "retrieval head", "cat": "retrieval", "tid": 1, "pid": 1,
                   "ts": ts, "dur": 180, "args": {"critical": True}})
        ts += 180
        ev.append({"ph": "X", "name": "top-k", "cat": "select", "tid": 1, "pid": 1, "ts": ts,
                   "dur": 40, "args": {"critical": True}})
        ts += 40
        for l in range(8):
            h2d = offload and l >= 4
            if h2d:
                ev.append({"ph": "X", "name": "prefetch L%d" % l, "cat": "prefetch", "tid": 2,
                           "pid": 1, "ts": ts - 60, "dur": 140, "args": {"critical": l == 7}})
            for nm, cat, d in (("qkv L%d" % l, "proj", 60), ("attn L%d" % l, "attention", 90),
                               ("mlp L%d" % l, "mlp", 120)):
                ev.append({"ph": "X", "name": nm, "cat": cat, "tid": 1, "pid": 1, "ts": ts,
                           "dur": d, "args": {"critical": True}})
                ts += d
            if offload and l == 2:
                ev.append({"ph": "X", "name": "kv evict", "cat": "prefetch", "tid": 3, "pid": 1,
                           "ts": ts, "dur": 70, "args": {"critical": False}})
        doc = {"traceEvents": ev, "displayTimeUnit": "ms",
               "otherData": {"step_ms": ts / 1000.0, "synthetic": True}}
        with open(os.path.join(root, "traces", name + ".trace.json"), "w") as f:
            json.dump(doc, f)


def run_script(*args):
    return subprocess.run([PYTHON, SCRIPT] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


class MakeFiguresTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="specontext-analysis-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_all_figures_and_report(self):
        make_synthetic_inputs(self.tmp)
        p = run_script(self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        figs = os.path.join(self.tmp, "figures")
        for stem in ("throughput-vs-budget", "speedup-cloud-throughput",
                     "speedup-edge-throughput", "memory-placement", "host-link-whatif",
                     "timeline-specontext_a800_R32", "timeline-shadowkv_a800_R1"):
            for ext in ("png", "svg"):
                path = os.path.join(figs, "%s.%s" % (stem, ext))
                self.assertTrue(os.path.isfile(path), path)
                self.assertGreater(os.path.getsize(path), 1000, path)
        with open(os.path.join(self.tmp, "report.md")) as f:
            text = f.read()
        self.assertIn("simulated predictions", text)
        self.assertIn("specontext reproduce", text)
        for stem in ("throughput-vs-budget", "speedup-cloud-throughput", "memory-placement",
                     "host-link-whatif", "timeline-specontext_a800_R32"):
            self.assertIn("](figures/%s.png)" % stem, text)
        self.assertIn("SpeContext", text)
        self.assertIn("specontext[c1+c2]", text)
        # The infeasible hf-eager run is listed with its reason, not dropped.
        bad = [l for l in text.splitlines() if l.startswith("| hf-eager")
               and "out of GPU memory" in l]
        self.assertTrue(bad, "infeasible hf-eager row missing from the report")
        self.assertIn("**no**", bad[0])
        self.assertIn("—", bad[0])

    def test_deterministic(self):
        make_synthetic_inputs(self.tmp)
        self.assertEqual(run_script(self.tmp).returncode, 0)
        figs = os.path.join(self.tmp, "figures")
        first = {}
        for n in sorted(os.listdir(figs)):
            with open(os.path.join(figs, n), "rb") as f:
                first[n] = f.read()
        with open(os.path.join(self.tmp, "report.md")) as f:
            report1 = f.read()
        self.assertEqual(run_script(self.tmp).returncode, 0)
        for n, data in first.items():
            with open(os.path.join(figs, n), "rb") as f:
                self.assertEqual(f.read(), data, n)
        with open(os.path.join(self.tmp, "report.md")) as f:
            self.assertEqual(f.read(), report1)

    def test_missing_inputs_are_skipped(self):
        make_synthetic_inputs(self.tmp)
        os.remove(os.path.join(self.tmp, "csv", "budget-sweep.csv"))
        os.remove(os.path.join(self.tmp, "csv", "edge-throughput.csv"))
        shutil.rmtree(os.path.join(self.tmp, "traces"))
        p = run_script(self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(self.tmp, "report.md")) as f:
            text = f.read()
        self.assertIn("csv/budget-sweep.csv` was not found", text)
        self.assertIn("no traces", text)
        self.assertTrue(os.path.isfile(os.path.join(self.tmp, "figures",
                                                    "speedup-cloud-throughput.png")))

    def test_empty_directory(self):
        p = run_script(self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.isfile(os.path.join(self.tmp, "report.md")))

    def test_malformed_csv_names_file_and_column(self):
        make_synthetic_inputs(self.tmp)
        path = os.path.join(self.tmp, "csv", "edge-throughput.csv")
        with open(path) as f:
            lines = f.read().splitlines()
        header = lines[0].split(",")
        fields = next(csv.reader([lines[1]]))
        fields[header.index("throughput_tok_s")] = "fast"
        lines[1] = ",".join('"%s"' % x if "," in x else x for x in fields)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("edge-throughput.csv", p.stderr)
        self.assertIn("throughput_tok_s", p.stderr)

    def test_missing_column_names_it(self):
        make_synthetic_inputs(self.tmp)
        path = os.path.join(self.tmp, "csv", "budget-sweep.csv")
        with open(path) as f:
            rows = list(csv.reader(f))
        i = rows[0].index("feasible")
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([r[:i] + r[i + 1:] for r in rows])
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("budget-sweep.csv", p.stderr)
        self.assertIn("'feasible'", p.stderr)

    def _report(self):
        with open(os.path.join(self.tmp, "report.md")) as f:
            return f.read()

    def test_attention_figures_and_report(self):
        make_synthetic_inputs(self.tmp)
        p = run_script(self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        figs = os.path.join(self.tmp, "figures")
        stems = ("attention-mass-vs-budget", "overlap-vs-budget", "prefetch-vs-budget",
                 "attention-mass-per-layer", "pareto-recall-vs-throughput",
                 "accuracy-vs-budget")
        for stem in stems:
            for ext in ("png", "svg"):
                path = os.path.join(figs, "%s.%s" % (stem, ext))
                self.assertTrue(os.path.isfile(path), path)
                self.assertGreater(os.path.getsize(path), 1000, path)
        text = self._report()
        self.assertIn("## Attention traces and Pareto fronts", text)
        for stem in stems:
            self.assertIn("](figures/%s.png)" % stem, text)
        self.assertIn("#### Trace passkey-2k", text)
        self.assertIn("#### Trace qa-single", text)
        # Recall mean (p10-p90) of specontext at B=16 in the passkey-2k table.
        self.assertIn("| 16 | 0.800 (0.740–0.850) | 0.450 (0.390–0.500) |", text)
        self.assertIn("The per-layer figure shows B = 128.", text)
        self.assertNotIn("Missing inputs", text)

    def test_pareto_front_in_report(self):
        make_synthetic_inputs(self.tmp)
        self.assertEqual(run_script(self.tmp).returncode, 0)
        text = self._report()
        section = text.split("#### a800-80g", 1)[1].split("####", 1)[0]
        got = []
        for line in section.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if line.startswith("| ") and cells[2].isdigit():
                got.append((cells[0], int(cells[2])))
        self.assertEqual(got, PARETO_FRONT)
        self.assertIn("5 of 9 feasible points are non-dominated. 1 more is left out "
                      "(out of GPU memory).", section)

    def test_pareto_front_function(self):
        pts = [(1.0, 5.0, "a"), (2.0, 4.0, "b"), (2.0, 3.0, "c"), (3.0, 4.0, "d"),
               (4.0, 1.0, "e"), (0.5, 5.0, "f"), (3.0, 4.0, "g"), (None, 9.0, "h"),
               (9.0, None, "i")]
        self.assertEqual([p[2] for p in pareto_front(pts)], ["a", "d", "e"])
        self.assertEqual(pareto_front([]), [])
        self.assertEqual(pareto_front([(1, 1)]), [(1, 1)])
        # Same x: only the higher y survives; same y: only the higher x.
        self.assertEqual(pareto_front([(1, 2), (1, 3), (0, 3)]), [(1, 3)])
        # The synthetic trace-sims points of a800-80g.
        pts = [(thr, rec, (p, b)) for p, b, thr, rec in PARETO_POINTS]
        self.assertEqual([x[2] for x in pareto_front(pts)], PARETO_FRONT)

    def test_accuracy_normalised(self):
        make_synthetic_inputs(self.tmp)
        self.assertEqual(run_script(self.tmp).returncode, 0)
        text = self._report()
        acc = text.split("### Accuracy vs budget (measured)", 1)[1]
        # specontext at 2048, B=256: 0.8 * 0.75 * 0.875 = 0.525; / 0.8 = 0.66.
        self.assertIn("| acc_cpu | cpu | — | 2048 | specontext | 256 | 10 | 0.53 | 0.80 | 0.66 |",
                      acc)
        # The head-input file has no dense row: the reference comes from acc_cpu.
        self.assertIn("| acc_headinput | cpu | — | 2048 | specontext (head_input=eagle) | 512 | 10 | "
                      "0.60 | 0.80 (acc_cpu) | 0.75 |", acc)
        self.assertIn("| acc_cpu | cpu | — | 4096 | full (dense) | full | 10 | 0.50 | 0.50 | 1.00 |",
                      acc)

    def test_accuracy_reference_is_the_same_tasks(self):
        # Two tasks at one context: each row is divided by its own task's dense row.
        files = [{"rows": [
            {"policy": "full", "budget": None, "task": "passkey", "context": 2048, "accuracy": 0.8,
             "backend": "cpu", "source": "a"},
            {"policy": "full", "budget": None, "task": "fidelity", "context": 2048, "accuracy": 1.0,
             "backend": "cpu", "source": "a"},
            {"policy": "quest", "budget": 256, "task": "fidelity", "context": 2048, "accuracy": 0.5,
             "backend": "cpu", "source": "a"},
            {"policy": "quest", "budget": 256, "task": "passkey", "context": 2048, "accuracy": 0.4,
             "backend": "cpu", "source": "a"}]}]
        got = {(r["task"], r["policy"]): r["normalised"] for r in normalise_accuracy(files)}
        self.assertAlmostEqual(got[("fidelity", "quest")], 0.5)
        self.assertAlmostEqual(got[("passkey", "quest")], 0.5)

    def test_old_output_without_attention_inputs(self):
        make_synthetic_inputs(self.tmp, attention=False)
        p = run_script(self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        text = self._report()
        self.assertIn("## Attention traces and Pareto fronts", text)
        self.assertIn("no attention replays (`attention/*.replay.json`) were found", text)
        self.assertIn("`csv/trace-sims.csv` was not found", text)
        self.assertIn("no accuracy results (`accuracy/*.json`) were found", text)
        for n in ("`attention/*.replay.json`", "`csv/trace-sims.csv`", "`accuracy/*.json`"):
            self.assertIn("- %s" % n, text)
        for stem in ("attention-mass-vs-budget", "pareto-recall-vs-throughput",
                     "accuracy-vs-budget", "prefetch-vs-budget"):
            self.assertFalse(os.path.exists(os.path.join(self.tmp, "figures", stem + ".png")))
        # The older figures are still drawn.
        self.assertTrue(os.path.isfile(os.path.join(self.tmp, "figures",
                                                    "throughput-vs-budget.png")))

    def test_some_attention_inputs_missing(self):
        make_synthetic_inputs(self.tmp)
        shutil.rmtree(os.path.join(self.tmp, "accuracy"))
        os.remove(os.path.join(self.tmp, "csv", "trace-sims.csv"))
        p = run_script(self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        text = self._report()
        self.assertIn("](figures/attention-mass-vs-budget.png)", text)
        self.assertIn("`csv/trace-sims.csv` was not found", text)
        self.assertIn("no accuracy results", text)

    def test_trace_sims_header_only(self):
        make_synthetic_inputs(self.tmp)
        with open(os.path.join(self.tmp, "csv", "trace-sims.csv"), "w") as f:
            f.write(",".join(SIM_COLUMNS) + "\n")
        p = run_script(self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("`csv/trace-sims.csv` has a header but no rows", self._report())

    def _report_with_figure(self, stem):
        """Runs the script on self.tmp; checks figures/stem.png was drawn; the report's text."""
        p = run_script(self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        fig = os.path.join(self.tmp, "figures", stem + ".png")
        self.assertTrue(os.path.isfile(fig) and os.path.getsize(fig) > 1000, fig)
        return self._report()

    def _edit_json(self, rel, edit):
        path = os.path.join(self.tmp, rel)
        with open(path) as f:
            doc = json.load(f)
        edit(doc)
        with open(path, "w") as f:
            json.dump(doc, f)

    def test_malformed_replay_names_file_and_field(self):
        make_synthetic_inputs(self.tmp)
        rel = os.path.join("attention", "passkey-2k.replay.json")
        self._edit_json(rel, lambda d: d["results"][1]["recall"].__setitem__("mean", "high"))
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("passkey-2k.replay.json", p.stderr)
        self.assertIn("results[1].recall.mean", p.stderr)

    def test_replay_without_results_names_field(self):
        make_synthetic_inputs(self.tmp)
        rel = os.path.join("attention", "qa-single.replay.json")
        self._edit_json(rel, lambda d: d.pop("results"))
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("qa-single.replay.json", p.stderr)
        self.assertIn("'results'", p.stderr)

    def test_replay_not_json(self):
        make_synthetic_inputs(self.tmp)
        with open(os.path.join(self.tmp, "attention", "qa-single.replay.json"), "w") as f:
            f.write("{not json")
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("qa-single.replay.json: not valid JSON", p.stderr)

    def test_measured_beside_predicted(self):
        make_synthetic_inputs(self.tmp)
        make_side_by_side(self.tmp)
        text = self._report_with_figure("measured-vs-predicted-step3")
        self.assertIn("## Measured beside predicted: one decode step", text)
        self.assertIn("](figures/measured-vs-predicted-step3.png)", text)
        self.assertIn("measured 1.000 ms (GPU work until 0.900 ms), predicted 0.800 ms "
                      "(-20.0% of the measured step)", text)
        from side_by_side import read_side_by_side
        s = read_side_by_side(os.path.join(self.tmp, "measured", "step3.trace.json"))
        by_name = {e["name"]: e for e in s["events"]}
        # A kernel takes its innermost named range's category; the step and layer ranges are
        # dropped (they enclose the others); a kernel outside the named ranges is 'other'. A
        # kernel is named by its function alone (no scope, template arguments or parameters).
        self.assertEqual(by_name["decode_kernel"]["cat"], "attention")
        self.assertEqual(by_name["gather"]["cat"], "prefetch")
        self.assertEqual(by_name["lm_head"]["cat"], "other")
        self.assertNotIn("layer 0", by_name)
        self.assertEqual([label for _, label in s["rows"]],
                         ["measured: NVTX (host launch)", "measured: stream 7",
                          "measured: stream 8", "predicted: GPU compute"])

    def test_accuracy_vs_measured_throughput(self):
        make_synthetic_inputs(self.tmp)
        make_engine_pareto(self.tmp)
        text = self._report_with_figure("pareto-accuracy-vs-measured-throughput")
        text = text.split("### Pareto fronts: accuracy vs measured throughput", 1)[1]
        self.assertIn("](figures/pareto-accuracy-vs-measured-throughput.png)", text)
        rows = [[c.strip() for c in l.strip("|").split("|")] for l in text.splitlines()
                if l.startswith("| ") and not l.startswith("| Task")]
        got = [(r[1], r[2], r[3], r[4], r[5], r[7], r[8], r[9].split(" ")[0]) for r in rows]
        # At 2K, B = 256 and 512 pair with the engine's 2048 and 4096 at 16K (1/8 and 1/4 of the
        # context); at 4K only B = 512 (1/8) has an engine run. Oracle has none; quest has no
        # accuracy rows. Accuracy / dense: acc_cpu's specontext 0.525 / 0.8, 0.6 / 0.8, streaming
        # 0.175 / 0.8, 0.2 / 0.8; acc_headinput's eagle-input rows (the paper's head) 0.6 / 0.8 at
        # both budgets pair too, its embed-input ones do not. Its B = 256 point (3000, 0.75)
        # dominates acc_cpu's (3000, 0.66) and both B = 512 points (2500, 0.75).
        self.assertEqual(got, [
            ("2048", "full (dense)", "full", "full", "1000", "1.00", "yes", "—"),
            ("2048", "specontext", "256", "2048 at 16384", "3000", "0.66", "no", "acc_cpu"),
            ("2048", "specontext", "256", "2048 at 16384", "3000", "0.75", "yes", "acc_headinput"),
            ("2048", "specontext", "512", "4096 at 16384", "2500", "0.75", "no", "acc_cpu"),
            ("2048", "specontext", "512", "4096 at 16384", "2500", "0.75", "no", "acc_headinput"),
            ("2048", "streaming", "256", "2048 at 16384", "3500", "0.22", "yes", "acc_cpu"),
            ("2048", "streaming", "512", "4096 at 16384", "3200", "0.25", "yes", "acc_cpu"),
            ("4096", "full (dense)", "full", "full", "1000", "1.00", "yes", "—"),
            ("4096", "specontext", "512", "2048 at 16384", "3000", "0.75", "yes", "acc_cpu"),
            ("4096", "streaming", "512", "2048 at 16384", "3500", "0.25", "yes", "acc_cpu"),
        ])

    def test_engine_pareto_front_drops_dominated_points(self):
        from engine_pareto import engine_pareto_panels
        engine = {"name": "e", "rows": [
            {"policy": "full", "budget": None, "depth": 1024, "requests": 1, "tokens_per_s": 10.0,
             "median_ms": 1, "min_ms": 1, "max_ms": 1, "overlap": None},
            {"policy": "quest", "budget": 128, "depth": 1024, "requests": 1, "tokens_per_s": 20.0,
             "median_ms": 1, "min_ms": 1, "max_ms": 1, "overlap": None},
            {"policy": "quest", "budget": 256, "depth": 1024, "requests": 1, "tokens_per_s": 15.0,
             "median_ms": 1, "min_ms": 1, "max_ms": 1, "overlap": None}]}
        acc = [{"policy": "quest", "budget": b, "task": "t", "context": 2048, "variant": "",
                "normalised": n, "accuracy": n, "source": "a", "backend": "cpu"}
               for b, n in ((256, 0.9), (512, 0.8))]
        # A head variant (e.g. the embed input) has no engine run of its own: it does not pair.
        acc.append(dict(acc[0], normalised=1.0, variant="head_input=embed", default_head=False))
        (panel,) = engine_pareto_panels([engine], acc)
        # quest 512 at 2K (15 tok/s, 0.8) is dominated by quest 256 (20 tok/s, 0.9).
        self.assertEqual([(p["engine_budget"] if p else "dense") for p in panel["front"]],
                         ["dense", 128])
        self.assertEqual(sorted(p["engine_budget"] for p in panel["points"]), [128, 256])

    def test_malformed_engine_pareto_names_file_and_field(self):
        make_synthetic_inputs(self.tmp)
        make_engine_pareto(self.tmp)
        self._edit_json(os.path.join("engine", "engine_pareto.json"),
                        lambda d: d["rows"][2].__setitem__("tokens_per_s", "fast"))
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("engine_pareto.json: field 'rows[2].tokens_per_s'", p.stderr)

    def test_malformed_side_by_side_names_file_and_field(self):
        make_synthetic_inputs(self.tmp)
        make_side_by_side(self.tmp)
        self._edit_json(os.path.join("measured", "step3.trace.json"),
                        lambda d: d["otherData"].pop("predicted_ms"))
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("step3.trace.json: field 'otherData.predicted_ms'", p.stderr)

    def test_malformed_accuracy_names_file_and_field(self):
        make_synthetic_inputs(self.tmp)
        self._edit_json(os.path.join("accuracy", "acc_cpu.json"),
                        lambda d: d["rows"][3].__setitem__("accuracy", "most"))
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("acc_cpu.json", p.stderr)
        self.assertIn("rows[3].accuracy", p.stderr)

    def test_malformed_trace_sims_names_file_and_column(self):
        make_synthetic_inputs(self.tmp)
        path = os.path.join(self.tmp, "csv", "trace-sims.csv")
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        rows[2][rows[0].index("prefetch_ms")] = "soon"
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        p = run_script(self.tmp)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("trace-sims.csv", p.stderr)
        self.assertIn("line 3", p.stderr)
        self.assertIn("prefetch_ms", p.stderr)

    def test_missing_directory(self):
        p = run_script(os.path.join(self.tmp, "does-not-exist"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("does-not-exist", p.stderr)


if __name__ == "__main__":
    unittest.main()
