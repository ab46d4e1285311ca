#!/usr/bin/python3
"""Draw the figures and write report.md from `specontext reproduce --out DIR`.

    /usr/bin/python3 analysis/make_figures.py DIR

Reads DIR/csv/*.csv, DIR/plans/*.json, DIR/traces/*.trace.json and, when present,
DIR/measured/*.trace.json (a measured step beside its prediction), DIR/attention/*.replay.json,
DIR/csv/trace-sims.csv, DIR/accuracy/*.json and DIR/engine/*.json (measured engine throughput);
writes
DIR/figures/*.png and *.svg and DIR/report.md. Missing inputs are skipped with
a note; a malformed input stops with a message naming the file and the field.
"""

import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results import EXPERIMENTS, InputError, load_experiments  # noqa: E402
from plans import load_plans  # noqa: E402
from traces import load_traces  # noqa: E402
from side_by_side import load_side_by_side  # noqa: E402
from attention import (load_accuracy, load_replays, load_trace_sims,  # noqa: E402
                       normalise_accuracy)
from engine_pareto import engine_pareto_panels, load_engine_pareto  # noqa: E402


def log(msg):
    sys.stderr.write("make_figures: %s\n" % msg)
    sys.stderr.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("dir", metavar="DIR", help="output folder of `specontext reproduce --out`")
    args = ap.parse_args(argv)
    root = args.dir
    if not os.path.isdir(root):
        log("error: %s does not exist or is not a directory "
            "(run `specontext reproduce --out %s` first)" % (root, root))
        return 2
    try:
        experiments = load_experiments(os.path.join(root, "csv"), log)
        plans = load_plans(os.path.join(root, "plans"), log)
        traces = load_traces(os.path.join(root, "traces"), log)
        measured = load_side_by_side(os.path.join(root, "measured"), log)
        replays = load_replays(os.path.join(root, "attention"), log)
        sims = load_trace_sims(os.path.join(root, "csv"), log)
        acc_files = load_accuracy(os.path.join(root, "accuracy"), log)
        engine_files = load_engine_pareto(os.path.join(root, "engine"), log)
    except InputError as e:
        log("error: %s" % e)
        return 1
    except (OSError, UnicodeDecodeError) as e:
        log("error: cannot read input: %s" % e)
        return 1

    # Import matplotlib only once the inputs are known to be good.
    import fig_attention
    import fig_budget
    import fig_hostlink
    import fig_memory
    import fig_pareto
    import fig_speedup
    import fig_timeline
    import report

    fig_dir = os.path.join(root, "figures")
    missing = ["`csv/%s.csv`" % n for n in EXPERIMENTS if n not in experiments]
    if not plans:
        missing.append("`plans/*.json`")
    if not traces:
        missing.append("`traces/*.trace.json`")
    if not replays:
        missing.append("`attention/*.replay.json`")
    if sims is None:
        missing.append("`csv/trace-sims.csv`")
    if not acc_files:
        missing.append("`accuracy/*.json`")

    exp_figures = {}
    for name in ("cloud-throughput", "edge-throughput"):
        if experiments.get(name):
            exp_figures[name] = fig_speedup.figure(name, experiments[name], fig_dir, log)
    if experiments.get("budget-sweep"):
        exp_figures["budget-sweep"] = fig_budget.figure(experiments["budget-sweep"], fig_dir, log)
    if experiments.get("host-link-whatif"):
        exp_figures["host-link-whatif"] = fig_hostlink.figure(experiments["host-link-whatif"],
                                                              fig_dir, log)
    plan_figure = fig_memory.figure(plans, fig_dir, log) if plans else None
    trace_figures = [fig_timeline.figure(t, fig_dir, log) for t in traces]
    measured_figures = [fig_timeline.figure(m, fig_dir, log,
                                            stem="measured-vs-predicted-" + fig_timeline.stem_for(m)[len("timeline-"):])
                        for m in measured]

    acc_rows = normalise_accuracy(acc_files)
    att_figures = {}
    if replays:
        att_figures["attention-mass-vs-budget"] = fig_attention.mass_figure(replays, fig_dir, log)
        att_figures["overlap-vs-budget"] = fig_attention.overlap_figure(replays, fig_dir, log)
        att_figures["attention-mass-per-layer"] = fig_attention.per_layer_figure(replays,
                                                                                 fig_dir, log)
    if sims:
        att_figures["prefetch-vs-budget"] = fig_attention.prefetch_figure(sims, fig_dir, log)
        att_figures["pareto-recall-vs-throughput"] = fig_pareto.pareto_figure(sims, fig_dir, log)
    if acc_rows:
        att_figures["accuracy-vs-budget"] = fig_pareto.accuracy_figure(acc_rows, fig_dir, log)
    engine_panels = engine_pareto_panels(engine_files, acc_rows)
    att_figures["pareto-accuracy-vs-measured-throughput"] = fig_pareto.engine_pareto_figure(
        engine_panels, fig_dir, log)
    attention = {"replays": replays, "sims": sims, "acc_files": acc_files,
                 "acc_rows": acc_rows, "figures": att_figures, "engine_files": engine_files,
                 "engine_panels": engine_panels}

    text = report.build(experiments, exp_figures, plans, plan_figure, traces, trace_figures,
                        missing, attention, (measured, measured_figures))
    out = os.path.join(root, "report.md")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    log("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
