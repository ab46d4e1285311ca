"""Figure 4: Gantt chart of one decode step (a Chrome trace): predicted (traces.py), or measured beside
predicted (side_by_side.py, which gives the rows and the title)."""

import re

from matplotlib.patches import Patch

from style import category_color, plt, save


def stem_for(trace):
    return "timeline-" + re.sub(r"[^A-Za-z0-9._-]+", "_", trace["name"])


def figure(trace, fig_dir, log, stem=None):
    events = trace["events"]
    if not events:
        log("note: %s has no complete ('X') events; timeline skipped" % trace["path"])
        return None
    if trace.get("rows"):
        tids = [key for key, _ in trace["rows"]]
    else:
        tids = sorted({e["tid"] for e in events},
                      key=lambda t: (0, t, "") if isinstance(t, int) else (1, 0, str(t)))
    t0 = min(e["ts"] for e in events)
    span_ms = max((e["ts"] + e["dur"] - t0) / 1e3 for e in events) or 1e-3
    cats = []
    for e in sorted(events, key=lambda e: (e["ts"], e["tid"] if isinstance(e["tid"], int) else 0)):
        if e["cat"] not in cats:
            cats.append(e["cat"])
    fig, ax = plt.subplots(figsize=(12, 1.3 + 0.62 * len(tids)))
    row_y = {tid: len(tids) - 1 - i for i, tid in enumerate(tids)}
    h = 0.72
    ys, lefts, widths, colors, edges, lws = [], [], [], [], [], []
    for e in events:
        ys.append(row_y[e["tid"]])
        lefts.append((e["ts"] - t0) / 1e3)
        widths.append(max(e["dur"] / 1e3, span_ms * 1e-4))
        colors.append(category_color(e["cat"]))
        edges.append("black" if e["critical"] else "none")
        lws.append(1.0 if e["critical"] else 0.0)
    ax.barh(ys, widths, left=lefts, height=h, color=colors, edgecolor=edges,
            linewidth=lws, zorder=2)
    for y, x, w, e in zip(ys, lefts, widths, events):
        if w > span_ms * 0.06:
            ax.text(x + w / 2, y, e["name"], ha="center", va="center", fontsize=6,
                    clip_on=True, zorder=4)
    ax.set_yticks([row_y[t] for t in tids])
    ax.set_yticklabels([trace["threads"].get(t, "tid %s" % (t,)) for t in tids])
    ax.set_ylim(-0.6, len(tids) - 0.4)
    ax.set_xlim(0, span_ms * 1.01)
    ax.set_xlabel("time within the step (ms)")
    ax.grid(axis="y", alpha=0)
    step = trace["step_ms"]
    ax.set_title(trace.get("title") or "%s — predicted step %s ms" % (
        trace["name"], "%.3f" % step if step is not None else "?"))
    handles = [Patch(color=category_color(c), label=c) for c in cats]
    handles.append(Patch(facecolor="white", edgecolor="black", lw=1.2,
                         label="critical path (outlined)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)
    fig.tight_layout()
    return save(fig, fig_dir, stem or stem_for(trace), log)
