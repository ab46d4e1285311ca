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


def make_synthetic_inputs(root):
    """Write a small SYNTHETIC `specontext reproduce` output tree under root."""
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

    def test_missing_directory(self):
        p = run_script(os.path.join(self.tmp, "does-not-exist"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("does-not-exist", p.stderr)


if __name__ == "__main__":
    unittest.main()
