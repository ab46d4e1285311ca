"""Figure 1: decode throughput vs KV budget (budget-sweep.csv)."""

import math

from results import distinct, label_order, workload_label
from style import plt, save, system_color

# Systems that attend to the whole context: drawn as a flat line across budgets.
DENSE = ("hf-eager", "hf-flash", "flashinfer")


def _panel_key(r):
    return (r["hardware"], r["hardware_variant"], r["model"], r["input"], r["output"],
            r["requests_mode"])


def _panel_title(key, show_mode):
    hw, var, model, i, o, mode = key
    t = "%s%s · %s · %s" % (hw, " (%s)" % var if var else "", model,
                           workload_label({"input": i, "output": o}, compact=True))
    if show_mode:
        t += " · R %s" % ("best" if mode == "best" else "fixed")
    return t


def figure(rows, fig_dir, log, stem="throughput-vs-budget"):
    keys = distinct(rows, _panel_key)
    if not keys:
        return None
    show_mode = len({k[5] for k in keys}) > 1
    n = len(keys)
    ncols = min(3, n)
    nrows = int(math.ceil(n / float(ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    legend = {}
    for idx, key in enumerate(keys):
        ax = axes[idx // ncols][idx % ncols]
        prow = [r for r in rows if _panel_key(r) == key]
        budgets = sorted({r["budget"] for r in prow if r["budget"]})
        for label in sorted(distinct(prow, "label"), key=label_order):
            lrows = [r for r in prow if r["label"] == label]
            color = system_color(label)
            swept = sorted([r for r in lrows if r["budget"]], key=lambda r: r["budget"])
            dense = lrows[0]["system"] in DENSE or not swept
            if dense:
                ok = [r["throughput_tok_s"] for r in lrows
                      if r["feasible"] and r["throughput_tok_s"]]
                if ok:
                    ax.axhline(ok[0], color=color, ls="--", lw=1.3, label="%s (full KV)" % label)
                else:
                    ax.plot([], [], color=color, marker="x", ls="none",
                            label="%s (infeasible)" % label)
                continue
            ok = [r for r in swept if r["feasible"] and r["throughput_tok_s"] is not None]
            bad = [r for r in swept if not (r["feasible"] and r["throughput_tok_s"] is not None)]
            lw = 2.2 if label == "SpeContext" else 1.4
            ax.plot([r["budget"] for r in ok], [r["throughput_tok_s"] for r in ok],
                    color=color, marker="o", ms=3.5, lw=lw,
                    label=label if not bad else "%s (x: infeasible)" % label)
            if bad:
                ax.plot([r["budget"] for r in bad], [0] * len(bad), color=color, marker="x",
                        ms=7, mew=2, ls="none", clip_on=False)
        if budgets:
            ax.set_xscale("log", base=2)
            ax.set_xticks(budgets)
            ax.set_xticklabels([str(b) for b in budgets], rotation=45 if len(budgets) > 6 else 0)
            ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_xlabel("KV budget B (tokens per head)")
        ax.set_ylabel("throughput (tokens/s)")
        ax.set_title(_panel_title(key, show_mode))
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in legend:
                legend[l] = h
    for idx in range(n, nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    fig.suptitle("Throughput vs KV budget (simulated; x on the axis = infeasible)")
    fig.tight_layout()
    fig.legend(list(legend.values()), list(legend.keys()), loc="center left",
               bbox_to_anchor=(1.0, 0.5))
    return save(fig, fig_dir, stem, log)
