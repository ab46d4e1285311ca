"""The markdown report (`DIR/report.md`): tables per experiment plus figure links."""

from attention import (accuracy_series_label, mid_budget, pareto_groups, pareto_title,
                       policy_order, replay_budgets, replay_policies, sim_point_label)
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
           "|" + "|".join("---:" if h.endswith(("(tok/s)", "(GB)", "(MB/step)", "(ms)", "R"))
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


def measured_section(steps, figures, measured_rel):
    """One decode step as the engine ran it on the GPU beside the simulator's prediction of it."""
    lines = ["## Measured beside predicted: one decode step", ""]
    if not steps:
        lines += ["_Not produced: no measured steps (`%s/*.trace.json`) were found._" % measured_rel, ""]
        return lines
    lines += ["Unlike the predicted timelines above, the upper rows are **measured**: the engine's "
              "step recorded by `specontext profile` (CUPTI kernels per CUDA stream, NVTX ranges; "
              "run without the CUDA graph so that each kernel carries its range, and with ~2% "
              "tracing cost), coloured by the range each kernel was launched in (*other*: "
              "outside the named ranges, e.g. the LM head and sampling). The NVTX row is the host's "
              "launch of each range, which runs ahead of the GPU. The lower rows are "
              "the calibrated simulator's prediction of the same point, which is calibrated to the "
              "step time measured with the graph (`sim/VALIDATION.md`). Both files open in Perfetto "
              "or chrome://tracing; `bench/trace_side_by_side.py` made them.", ""]
    for s, fig in zip(steps, figures):
        lines.append("### %s" % s["name"])
        lines.append("")
        lines.append("- measured (process 1): %s" % s["measured_what"])
        lines.append("- predicted (process 2): %s" % s["predicted_what"])
        lines.append("- step: measured %.3f ms (GPU work until %.3f ms), predicted %.3f ms "
                     "(%+.1f%% of the measured step)" % (
                         s["measured_ms"], s["measured_gpu_ms"], s["predicted_ms"],
                         100.0 * (s["predicted_ms"] - s["measured_ms"]) / s["measured_ms"]))
        lines.append("- trace: `%s/%s.trace.json`" % (measured_rel, s["name"]))
        lines.append("")
        if fig:
            lines += ["![%s](figures/%s)" % (s["name"], fig), ""]
    return lines


def _frac(v):
    return "—" if v is None else "%.3f" % v


def _replay_summary(rp):
    t = rp["trace"]
    bits = []
    model = t.get("model") or "?"
    if t.get("draft"):
        model += " (draft %s)" % t["draft"]
    bits.append("model **%s**" % model)
    if t.get("task"):
        bits.append("task %s" % t["task"])
    if t.get("prompt_source"):
        bits.append("prompts from %s" % t["prompt_source"])
    if t.get("backend"):
        bits.append("recorded on the %s backend" % t["backend"])
    if t.get("layers") and t.get("kv_heads"):
        bits.append("%d layers × %d KV heads" % (t["layers"], t["kv_heads"]))
    if t.get("requests"):
        bits.append("%d request%s" % (t["requests"], "" if t["requests"] == 1 else "s"))
    if t.get("prompt_tokens"):
        bits.append("%d-token prompts" % t["prompt_tokens"])
    if t.get("max_new"):
        bits.append("up to %d new tokens" % t["max_new"])
    if t.get("b_max"):
        bits.append("b_max %d" % t["b_max"])
    return ", ".join(bits)


def _replay_tables(rp):
    pols = replay_policies(rp)
    budgets = replay_budgets(rp)
    by = {(r["policy"], r["budget"]): r for r in rp["results"]}
    lines = ["Recall (attention mass captured; mean over decode steps, p10–p90 in brackets):",
             ""]
    body = []
    for b in budgets:
        cells = [b]
        for p in pols:
            r = by.get((p, b))
            cells.append("%.3f (%.3f–%.3f)" % (r["recall"], r["p10"], r["p90"]) if r else "—")
        body.append(cells)
    lines += _table(["Budget"] + pols, body)
    lines += ["", "Overlap of adjacent decode steps' selections (— : no request has two steps):",
              ""]
    body = []
    for b in budgets:
        cells = [b]
        for p in pols:
            r = by.get((p, b))
            cells.append(_frac(r["overlap"]) if r else "—")
        body.append(cells)
    lines += _table(["Budget"] + pols, body)
    lines.append("")
    return lines


def _pareto_tables(rows):
    lines = []
    groups = pareto_groups(rows)
    for g in groups:
        lines += ["#### %s" % pareto_title(g, groups), ""]
        if g["front"]:
            body = []
            for r in g["front"]:
                h2d = r["h2d_bytes_per_step"]
                body.append([sim_point_label(r, rows), r["system_label"], r["budget"],
                             r["trace_budget"] if r["trace_budget"] is not None else "—",
                             _frac(r["recall"]), _frac(r["overlap"]),
                             r["requests"] if r["requests"] is not None else "—",
                             fmt_num(r["throughput_tok_s"]),
                             fmt_num(h2d / 1e6) if h2d is not None else "—",
                             fmt_num(r["prefetch_ms"])])
            lines += _table(["Policy", "System", "Budget", "Trace budget", "Recall", "Overlap",
                             "R", "Throughput (tok/s)", "H2D (MB/step)", "Prefetch (ms)"], body)
            lines.append("")
        else:
            lines += ["_No feasible point with a throughput and a recall._", ""]
        note = "%d of %d feasible point%s %s non-dominated." % (
            len(g["front"]), len(g["points"]), "" if len(g["points"]) == 1 else "s",
            "is" if len(g["front"]) == 1 else "are")
        if g["left_out"]:
            reasons = distinct(g["left_out"], lambda r: r["reason"] or (
                "infeasible" if not r["feasible"] else "no throughput or recall"))
            note += " %d more %s left out (%s)." % (
                len(g["left_out"]), "is" if len(g["left_out"]) == 1 else "are",
                "; ".join(reasons))
        lines += [note, ""]
    return lines


def _accuracy_table(acc_rows):
    def key(r):
        return (r["file_index"], r["task"], r["context"], r["policy"] != "full",
                policy_order(r["policy"]), r["variant"], r["budget"] or 0)
    body = []
    for r in sorted(acc_rows, key=key):
        label = accuracy_series_label(r, acc_rows) if r["policy"] != "full" else "full (dense)"
        dense = "—" if r["dense"] is None else "%.2f" % r["dense"]
        if r["dense"] is not None and r["dense_source"] != r["source"]:
            dense += " (%s)" % r["dense_source"]
        body.append([r["source"], r["backend"] or "—", r["task"] or "—", r["context"], label,
                     "full" if r["policy"] == "full" else (r["budget"] or "—"),
                     r["trials"] if r["trials"] is not None else "—",
                     "%.2f" % r["accuracy"], dense,
                     "—" if r["normalised"] is None else "%.2f" % r["normalised"],
                     _frac(r["overlap_rate"])])
    return _table(["Source", "Backend", "Task", "Context", "Policy", "Budget", "Trials", "Accuracy",
                   "Dense accuracy", "Accuracy / dense", "Overlap rate"], body)


def _file_list(files, rel):
    """A bullet per results file: its path under DIR, what it holds and the machine."""
    lines = []
    for f in files:
        desc = "- `%s/%s.json`" % (rel, f["name"])
        if f["what"]:
            desc += ": %s" % f["what"]
        if f["machine"]:
            desc += " (%s)" % f["machine"]
        lines.append(desc)
    return lines + [""]


def engine_pareto_section(engine_files, panels, figure, engine_rel="engine"):
    """Accuracy (measured on SmolLM2) against the engine's measured throughput (the paper's model
    shape on the GPU), paired at the same budget fraction of the context."""
    lines = ["### Pareto fronts: accuracy vs measured throughput", ""]
    if not engine_files:
        lines += ["_Not produced: no measured engine throughput (`%s/*.json`) was found._"
                  % engine_rel, ""]
        return lines
    lines += ["Both axes are **measured**: the throughput by `specontext bench` on the GPU at the "
              "paper's model shape (random weights; the retrieval head's selection replaced by a "
              "synthetic stream with the overlap a recorded trace measured), the accuracy by real "
              "sparse runs on SmolLM2 with its draft. A point pairs the two at the same budget "
              "fraction of the context (engine B / depth = accuracy B / context); the dense run is "
              "at accuracy 1. A point is on the front when no other has a throughput and an "
              "accuracy at least as high, one of them higher.", ""]
    lines += _file_list(engine_files, engine_rel)
    if not panels:
        lines += ["_No pairs: no accuracy row has the policy and budget fraction of an engine "
                  "row._", ""]
        return lines
    if figure:
        lines += ["![pareto accuracy vs measured throughput](figures/%s)" % figure, ""]
    body = []
    for g in panels:
        if g["dense"]:
            d = g["dense"]
            body.append([g["task"] or "—", g["context"], "full (dense)", "full", "full",
                         "%.0f" % d["tokens_per_s"],
                         "%.2f (%.2f–%.2f)" % (d["median_ms"], d["min_ms"], d["max_ms"]),
                         "1.00", "yes" if None in g["front"] else "no", "—"])
        for p in sorted(g["points"], key=lambda p: (policy_order(p["policy"]), p["budget"])):
            body.append([g["task"] or "—", g["context"], p["policy"], p["budget"],
                         "%d at %d" % (p["engine_budget"], g["depth"]), "%.0f" % p["tokens_per_s"],
                         "%.2f (%.2f–%.2f)" % (p["median_ms"], p["min_ms"], p["max_ms"]),
                         "%.2f" % p["normalised"],
                         "yes" if any(p is q for q in g["front"]) else "no",
                         "%s (%s)" % (p["source"], p["backend"] or "?")])
    lines += _table(["Task", "Context", "Policy", "Budget", "Engine budget at depth", "Tokens/s",
                     "ms/step (min–max)", "Accuracy / dense", "On the front", "Accuracy from"], body)
    lines.append("")
    return lines


def attention_section(replays, sims, acc_files, acc_rows, figures, attention_rel="attention",
                      sims_rel="csv/trace-sims.csv", accuracy_rel="accuracy", engine_files=None,
                      engine_panels=None):
    """Attention traces and Pareto fronts: replays, trace-driven simulations, accuracy."""
    figures = figures or {}
    lines = ["## Attention traces and Pareto fronts", ""]
    lines += ["Unlike the sections above, recall (the attention mass a policy's budget-B "
              "selection captures) and overlap (of adjacent decode steps' selections) are "
              "**measured** on recorded attention traces, replayed offline by `specontext "
              "replay`, and accuracy is **measured** on real sparse runs of the engine. The "
              "throughput and prefetch in the Pareto fronts are **simulated** at paper scale "
              "with the trace's measured overlap.", ""]

    lines += ["### Attention mass and overlap vs budget", ""]
    if not replays:
        lines += ["_Not produced: no attention replays (`%s/*.replay.json`) were found; these "
                  "figures and tables are skipped._" % attention_rel, ""]
    else:
        for stem, alt in (("attention-mass-vs-budget", "attention mass vs budget"),
                          ("overlap-vs-budget", "overlap vs budget"),
                          ("attention-mass-per-layer", "attention mass per layer")):
            if figures.get(stem):
                lines += ["![%s](figures/%s)" % (alt, figures[stem]), ""]
        for rp in replays:
            lines += ["#### Trace %s" % rp["name"], ""]
            src = "Source: `%s/%s.replay.json`" % (attention_rel, rp["name"])
            if rp["file"]:
                src += " (replay of `%s`)" % rp["file"]
            lines += [src + ".", ""]
            lines += [_replay_summary(rp) + ".", ""]
            if not rp["results"]:
                lines += ["_The replay has no results._", ""]
                continue
            b = mid_budget(rp)
            if b is not None:
                lines += ["The per-layer figure shows B = %d." % b, ""]
            if all(r["overlap"] is None for r in rp["results"]):
                lines += ["No request of this trace has two decode steps, so it has no "
                          "overlap and is not in the overlap figure.", ""]
            lines += _replay_tables(rp)

    lines += ["### Pareto fronts: recall vs simulated throughput", ""]
    lines.append("Source: `%s`." % sims_rel)
    lines.append("")
    if sims is None:
        lines += ["_Not produced: `%s` was not found, so the Pareto and prefetch figures and "
                  "tables are skipped._" % sims_rel, ""]
    elif not sims:
        lines += ["_`%s` has a header but no rows; nothing to show._" % sims_rel, ""]
    else:
        lines += ["Each point is one (policy, budget) simulated on the hardware with the "
                  "overlap measured on the trace; its recall was read at *trace budget*, the "
                  "same fraction of the trace's context as *budget* is of the simulated one. "
                  "A point is on the front (non-dominated) when no other point has a "
                  "throughput and a recall at least as high, one of them higher; the front is the "
                  "best recall reachable at any throughput ≥ x.", ""]
        for stem, alt in (("pareto-recall-vs-throughput", "pareto recall vs throughput"),
                          ("prefetch-vs-budget", "prefetch vs budget")):
            if figures.get(stem):
                lines += ["![%s](figures/%s)" % (alt, figures[stem]), ""]
        if not figures.get("prefetch-vs-budget"):
            lines += ["_No prefetch figure: `%s` has no rows of policy specontext._"
                      % sims_rel, ""]
        lines += _pareto_tables(sims)

    lines += ["### Accuracy vs budget (measured)", ""]
    if not acc_files:
        lines += ["_Not produced: no accuracy results (`%s/*.json`) were found; this figure "
                  "and table are skipped._" % accuracy_rel, ""]
        return lines
    lines += ["Accuracy of real sparse runs of the engine, divided by the accuracy of the "
              "dense (full KV) run of the same context: from the same file, else from another "
              "file with the same context and backend (named in brackets); — when there is "
              "none or it is 0.", ""]
    lines += _file_list(acc_files, accuracy_rel)
    if figures.get("accuracy-vs-budget"):
        lines += ["![accuracy vs budget](figures/%s)" % figures["accuracy-vs-budget"], ""]
    else:
        lines += ["_No figure: no sparse row has a dense reference._", ""]
    lines += _accuracy_table(acc_rows)
    lines.append("")
    lines += engine_pareto_section(engine_files or [], engine_panels or [],
                                   figures.get("pareto-accuracy-vs-measured-throughput"))
    return lines


def build(experiments, exp_figures, plans, plan_figure, traces, trace_figures, missing_notes,
          attention=None, measured=None):
    lines = [
        "# SpeContext reproduction: simulated results",
        "",
        "> **These numbers are simulated predictions** of the `specontext` performance model "
        "(analytic operation costs scheduled over GPU, host link and host), not measurements "
        "on real hardware — except the measured step in *Measured beside predicted* and the "
        "recall, overlap and accuracy in *Attention traces and Pareto fronts*, which are measured.",
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
    if measured is not None:
        lines += measured_section(measured[0], measured[1], "measured")
    if attention is not None:
        lines += attention_section(**attention)
    return "\n".join(lines).rstrip() + "\n"
