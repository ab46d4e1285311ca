"""The markdown report (`DIR/report.md`): tables per experiment plus figure links."""

from results import distinct, label_order, speedup, workload_label

TITLES = {
    "cloud-throughput": "Cloud throughput (multiple requests and a single request)",
    "edge-throughput": "Edge throughput",
    "budget-sweep": "Throughput vs KV budget",
    "host-link-whatif": "Host-link what-if",
}


def fmt_num(v):
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a == 0:
        return "0"
    if a >= 0.01:
        return "%.2f" % v
    return "%.3g" % v


def fmt_speedup(v):
    if v is None:
        return "—"
    return ("%.1f×" % v) if v >= 10 else ("%.2f×" % v)


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if h.endswith(("(tok/s)", "(GB)", "(MB/step)", "R"))
                          or h.startswith("×") else "---" for h in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_cell(c) for c in r) + " |")
    return out


def _sort_key(r):
    return (r["hardware"], r["hardware_variant"], r["model"], r["input"] or 0,
            r["output"] or 0, r["requests_mode"] != "fixed", label_order(r["label"]),
            r["budget"] or 0)


def experiment_section(name, rows, figure, csv_rel):
    lines = ["## %s" % TITLES.get(name, name), ""]
    lines.append("Source: `%s`." % csv_rel)
    lines.append("")
    if rows is None:
        lines += ["_Not produced: `%s` was not found, so this figure and table are skipped._"
                  % csv_rel, ""]
        return lines
    if not rows:
        lines += ["_`%s` has a header but no rows; nothing to show._" % csv_rel, ""]
        return lines
    varying = {}
    constant = []
    for col, title in (("hardware", "hardware"), ("hardware_variant", "host link"),
                       ("model", "model"), ("budget", "KV budget")):
        vals = distinct(rows, col)
        if col == "budget":
            vals = [v for v in vals if v]
        if len(vals) > 1 or (col == "budget" and name == "budget-sweep"):
            varying[col] = True
        elif vals and vals[0] not in ("", None):
            constant.append("%s **%s**%s" % (title, vals[0], " (sparse methods)"
                                             if col == "budget" else ""))
    if constant:
        lines += ["Same for every row: " + ", ".join(constant) + ".", ""]
    if figure:
        lines += ["![%s](figures/%s)" % (name, figure), ""]
    else:
        lines += ["_No figure for this experiment (see the notes printed by make_figures.py)._",
                  ""]
    header = []
    if "hardware" in varying:
        header.append("Hardware")
    if "hardware_variant" in varying:
        header.append("Host link")
    if "model" in varying:
        header.append("Model")
    header += ["System", "Components", "Workload"]
    if "budget" in varying:
        header.append("Budget")
    bases = [b for b in ("hf-eager", "flashinfer") if any(r["system"] == b for r in rows)]
    header += ["R", "Feasible", "Throughput (tok/s)"] + ["× %s" % b for b in bases]
    header += ["Peak GPU (GB)", "H2D (MB/step)"]
    body = []
    for r in sorted(rows, key=_sort_key):
        cells = []
        if "hardware" in varying:
            cells.append(r["hardware"])
        if "hardware_variant" in varying:
            cells.append(r["hardware_variant"] or "—")
        if "model" in varying:
            cells.append(r["model"])
        cells += [r["label"], r["components"] or "—", workload_label(r)]
        if "budget" in varying:
            cells.append(r["budget"] if r["budget"] else "full")
        cells.append("%s (%s)" % (r["requests"] if r["requests"] is not None else "?",
                                  r["requests_mode"]))
        if r["feasible"]:
            cells.append("yes")
        else:
            cells.append("**no**: %s" % (r["reason"] or "infeasible"))
        cells.append(fmt_num(r["throughput_tok_s"]))
        for b in bases:
            cells.append(fmt_speedup(speedup(r, rows, b)[0]))
        pg = r["peak_gpu_bytes"]
        cells.append(fmt_num(pg / 1e9) if pg is not None and r["feasible"] else "—")
        h2d = r["h2d_bytes_per_step"]
        cells.append(fmt_num(h2d / 1e6) if h2d is not None and r["feasible"] else "—")
        body.append(cells)
    lines += _table(header, body)
    n_bad = sum(1 for r in rows if not r["feasible"])
    missing_bases = [b for b in ("hf-eager", "flashinfer") if b not in bases]
    if missing_bases:
        lines += ["", "No %s rows in this experiment, so no speedup over %s."
                  % (" or ".join(missing_bases), "it" if len(missing_bases) == 1 else "them")]
    if n_bad:
        lines += ["", "%d of %d configurations are infeasible (marked **no** with the "
                  "simulator's reason; drawn as x / OOM in the figure)." % (n_bad, len(rows))]
    lines.append("")
    return lines


def plans_section(plans, figure, plans_rel):
    lines = ["## Adaptive memory placement", ""]
    if not plans:
        lines += ["_Not produced: no memory plans (`%s/*.json`) were found; figure skipped._"
                  % plans_rel, ""]
        return lines
    if figure:
        lines += ["![memory placement](figures/%s)" % figure, ""]
    body = []
    for p in plans:
        segs = p["segments"]
        finite = [t for t in p["thresholds"] if t is not None]
        body.append([p["name"], p["model"], p["hardware"],
                     p["requests"] if p["requests"] is not None else "—",
                     p["budget"] if p["budget"] is not None else "—",
                     fmt_num(p["gpu_memory_bytes"] / 1e9) if isinstance(
                         p["gpu_memory_bytes"], (int, float)) else "—",
                     "%d → %d" % (segs[0][2], segs[-1][2]),
                     ", ".join(str(int(t)) for t in finite[:6]) + (" …" if len(finite) > 6
                                                                   else "") or "—"])
    lines += _table(["Plan", "Model", "Hardware", "R", "Budget", "GPU memory (GB)",
                     "GPU layers (start → end)", "Thresholds S^T"], body)
    lines.append("")
    return lines


def traces_section(traces, figures, traces_rel):
    lines = ["## Predicted step timelines", ""]
    if not traces:
        lines += ["_Not produced: no traces (`%s/*.trace.json`) were found; timelines skipped._"
                  % traces_rel, ""]
        return lines
    lines += ["One predicted decode step per trace; boxes are coloured by category and "
              "critical-path operations are outlined. The traces open in Perfetto or "
              "chrome://tracing.", ""]
    for t, fig in zip(traces, figures):
        step = "%.3f ms" % t["step_ms"] if t["step_ms"] is not None else "unknown"
        lines.append("### %s (step %s)" % (t["name"], step))
        lines.append("")
        if fig:
            lines.append("![%s](figures/%s)" % (t["name"], fig))
        else:
            lines.append("_No complete events in `%s/%s.trace.json`._" % (traces_rel, t["name"]))
        lines.append("")
    return lines


def build(experiments, exp_figures, plans, plan_figure, traces, trace_figures, missing_notes):
    lines = [
        "# SpeContext reproduction: simulated results",
        "",
        "> **These numbers are simulated predictions** of the `specontext` performance model "
        "(analytic operation costs scheduled over GPU, host link and host), not measurements "
        "on real hardware.",
        "",
        "Produced by `specontext reproduce --out DIR`; figures and this report by "
        "`/usr/bin/python3 analysis/make_figures.py DIR`.",
        "",
        "Speedups (× hf-eager, × flashinfer) divide a row's throughput by the baseline's in "
        "the same hardware, host link, model, workload and request mode; with R *best* each "
        "system runs at its own best request count, with R *fixed* at the same count. "
        "`SpeContext` is the full system (c1+c2+c3); `specontext[…]` rows are ablations. "
        "A speedup of — means it is undefined: the row or its baseline is infeasible. "
        "GB and MB are 10^9 and 10^6 bytes.",
        "",
    ]
    if missing_notes:
        lines += ["Missing inputs:", ""] + ["- %s" % n for n in missing_notes] + [""]
    for name in ("cloud-throughput", "edge-throughput", "budget-sweep", "host-link-whatif"):
        lines += experiment_section(name, experiments.get(name), exp_figures.get(name),
                                    "csv/%s.csv" % name)
    lines += plans_section(plans, plan_figure, "plans")
    lines += traces_section(traces, trace_figures, "traces")
    return "\n".join(lines).rstrip() + "\n"
