"""Figure 2: speedup per system over hf-eager and flashinfer (cloud/edge throughput)."""

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from results import distinct, infeasible_tag, label_order, speedup, workload_label
from style import (finish_with_top_legend, legend_height_in, plt, save,
                   system_color)


def _machine_key(r):
    return (r["hardware"], r["hardware_variant"], r["model"])


def _draw_panel(ax, prow, all_rows, baseline, labels, workloads, modes):
    bar_mode = "best" if "best" in modes else "fixed"
    marker_mode = "fixed" if (bar_mode == "best" and "fixed" in modes) else None
    nl = len(labels)
    width = 0.84 / max(nl, 1)
    values = []
    notes = []      # (x, y-in-axes, text)
    for wi, wl in enumerate(workloads):
        group_note = None
        for li, label in enumerate(labels):
            x = wi - 0.42 + width * (li + 0.5)
            color = system_color(label)
            for mode in (bar_mode, marker_mode):
                if mode is None:
                    continue
                match = [r for r in prow if r["label"] == label and r["requests_mode"] == mode
                         and (r["input"], r["output"]) == wl]
                if not match:
                    continue
                r = match[0]
                s, why = speedup(r, all_rows, baseline)
                if s is not None:
                    values.append(s)
                    if mode == bar_mode:
                        ax.bar(x, s - 1.0, bottom=1.0, width=width * 0.92, color=color,
                               edgecolor="black" if label == "SpeContext" else "none", lw=0.6)
                        if mode == "best" and r["requests"] is not None:
                            ax.annotate("R=%d" % r["requests"], (x, max(s, 1.0)),
                                        xytext=(0, 2), textcoords="offset points",
                                        ha="center", va="bottom", fontsize=6, rotation=90)
                    else:
                        ax.plot(x, s, marker="D", ms=4.5, mfc=color, mec="black", mew=0.8,
                                ls="none", zorder=5)
                elif why == "infeasible":
                    tag = infeasible_tag(r["reason"])
                    if mode == bar_mode:
                        ax.plot(x, 1.0, marker="x", ms=7, mew=2, color=color, ls="none",
                                zorder=5)
                        ax.annotate(tag, (x, 1.0), xytext=(0, 6), textcoords="offset points",
                                    ha="center", va="bottom", fontsize=6.5, rotation=90,
                                    color="black", fontweight="bold")
                    else:
                        ax.plot(x, 1.0, marker="X", ms=6, mfc="white", mec=color, mew=1.2,
                                ls="none", zorder=6)
                elif why and "infeasible" in why and mode == bar_mode:
                    group_note = "%s infeasible" % baseline
                elif why and why.startswith("no ") and mode == bar_mode:
                    group_note = group_note or "no %s row" % baseline
        if group_note:
            notes.append((wi, group_note))
    lo = min(values + [1.0])
    hi = max(values + [1.0])
    ax.set_yscale("log")
    ax.set_ylim(lo / 1.6, hi * 3.0)
    ax.axhline(1.0, color="black", lw=0.8)
    for wi, text in notes:
        ax.text(wi, 0.97, text, transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=7, color="#a00000")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels([workload_label({"input": i, "output": o}, compact=True)
                        for i, o in workloads])
    ax.set_xlim(-0.5, len(workloads) - 0.5)
    ax.set_xlabel("workload [input, output] tokens")
    ax.set_ylabel("speedup over %s (×)" % baseline)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: "%g×" % v))
    return bar_mode, marker_mode


def figure(experiment, rows, fig_dir, log):
    machines = distinct(rows, _machine_key)
    if not machines:
        return None
    baselines = [b for b in ("hf-eager", "flashinfer") if any(r["system"] == b for r in rows)]
    if not baselines:
        log("note: %s has neither hf-eager nor flashinfer rows; speedup figure skipped"
            % experiment)
        return None
    labels = sorted(distinct(rows, "label"), key=label_order)
    modes = set(r["requests_mode"] for r in rows)
    npanels = len(machines) * len(baselines)
    nw = max(len(distinct([r for r in rows if _machine_key(r) == m],
                          lambda r: (r["input"], r["output"]))) for m in machines)
    width = min(16.0, max(7.0, 1.2 + nw * (0.24 * len(labels) + 0.4)))
    ncol = min(6, max(3, int(width // 2.2)))
    height = 3.4 * npanels + legend_height_in(len(labels) + 3, ncol)
    fig, axes = plt.subplots(npanels, 1, figsize=(width, height), squeeze=False)
    bar_mode = marker_mode = None
    for mi, m in enumerate(machines):
        prow = [r for r in rows if _machine_key(r) == m]
        workloads = sorted(distinct(prow, lambda r: (r["input"], r["output"])),
                           key=lambda w: (w[0] or 0, w[1] or 0))
        for bi, base in enumerate(baselines):
            ax = axes[mi * len(baselines) + bi][0]
            bar_mode, marker_mode = _draw_panel(ax, prow, rows, base, labels, workloads, modes)
            hw, var, model = m
            ax.set_title("%s%s · %s — speedup over %s" % (hw, " (%s)" % var if var else "",
                                                           model, base))
    handles = [Patch(color=system_color(l), label=l) for l in labels]
    handles.append(Patch(facecolor="white", edgecolor="none",
                         label="bars: R %s" % ("= best per system (R=… on top)"
                                               if bar_mode == "best" else "fixed")))
    if marker_mode:
        handles.append(Line2D([], [], marker="D", mfc="white", mec="black", ls="none",
                              label="◆: fixed R (single request)"))
    handles.append(Line2D([], [], marker="x", color="black", mew=2, ls="none",
                          label="x: infeasible (OOM / n/a)"))
    finish_with_top_legend(fig, handles, "Speedup per system — %s (simulated)" % experiment,
                           ncol)
    return save(fig, fig_dir, "speedup-" + experiment, log)
