"""Attention-trace figures: attention mass (recall) and overlap vs budget per policy
(paper Fig. 5a and 6b), recall per layer, and the prefetch each step needs (Fig. 6a)."""

import math

from matplotlib.lines import Line2D

from attention import mid_budget, policy_order, replay_budgets, replay_policies
from results import distinct
from style import finish_with_top_legend, legend_height_in, plt, save

POLICY_COLORS = {
    "oracle": "#000000",
    "oracle-shared": "#6b6b6b",
    "specontext": "#d62728",
    "specontext-batch": "#f16913",
    "quest": "#2ca02c",
    "streaming": "#7f7f7f",
}
_EXTRA = ["#1f77b4", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#bcbd22"]
HARDWARE_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                   "#17becf", "#e377c2"]


def policy_color(name, _extra={}):
    base = name.split(" ")[0]
    if base in POLICY_COLORS:
        return POLICY_COLORS[base]
    if base not in _extra:
        _extra[base] = _EXTRA[len(_extra) % len(_EXTRA)]
    return _extra[base]


def policy_style(name):
    """The oracles (upper bounds: per layer, and shared by every layer) dashed; the others solid."""
    return "--" if name.split(" ")[0] in ("oracle", "oracle-shared") else "-"


def _grid(n, max_cols=3):
    ncols = min(max_cols, n)
    nrows = int(math.ceil(n / float(ncols)))
    return nrows, ncols


def budget_axis(ax, budgets):
    """A log2 budget axis with a tick at each budget (shared with fig_pareto)."""
    if not budgets:
        return
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets)
    ax.set_xticklabels([str(b) for b in budgets], rotation=45 if len(budgets) > 6 else 0)
    ax.minorticks_off()


def short_name(text):
    """'models/x/SmolLM2-135M.Q4_1.gguf' -> 'SmolLM2-135M.Q4_1' (paths shortened for titles)."""
    name = (text or "").rstrip("/").rsplit("/", 1)[-1]
    return name[:-len(".gguf")] if name.endswith(".gguf") else name


def trace_title(replay):
    """'name · task' over 'model + draft · N-token prompts'."""
    t = replay["trace"]
    first = [replay["name"]]
    if t.get("task"):
        first.append(t["task"])
    model = short_name(t.get("model")) or "?"
    if t.get("draft"):
        model += " + %s" % short_name(t["draft"])
    second = [model]
    if t.get("prompt_tokens"):
        second.append("%d-token prompts" % t["prompt_tokens"])
    return " · ".join(first) + "\n" + " · ".join(second)


def _hide_unused(axes, n, nrows, ncols):
    for idx in range(n, nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)


def _policy_handles(policies, band_note=None):
    handles = [Line2D([], [], color=policy_color(p), ls=policy_style(p), marker="o", ms=3.5,
                      label=p) for p in policies]
    if band_note:
        handles.append(plt.Rectangle((0, 0), 1, 1, color="#999999", alpha=0.25,
                                     label=band_note))
    return handles


def _all_policies(replays):
    pols = []
    for rp in replays:
        for p in replay_policies(rp):
            if p not in pols:
                pols.append(p)
    return sorted(pols, key=policy_order)


def _budget_panels(replays, handles, draw, ylabel, title, fig_dir, log, stem):
    """One panel per trace over a log2 budget axis: draw(ax, replay) plots its policies' lines."""
    n = len(replays)
    nrows, ncols = _grid(n)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.6 * nrows
                                                    + legend_height_in(len(handles), 6)),
                             squeeze=False)
    for idx, rp in enumerate(replays):
        ax = axes[idx // ncols][idx % ncols]
        draw(ax, rp)
        budget_axis(ax, replay_budgets(rp))
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("KV budget B (tokens per head)")
        ax.set_ylabel(ylabel)
        ax.set_title(trace_title(rp), fontsize=9)
    _hide_unused(axes, n, nrows, ncols)
    finish_with_top_legend(fig, handles, title, min(len(handles), 6))
    return save(fig, fig_dir, stem, log)


def _line_width(policy):
    return 2.0 if policy == "specontext" else 1.4


def mass_figure(replays, fig_dir, log, stem="attention-mass-vs-budget"):
    """Per trace a panel: recall mean vs budget per policy, p10-p90 band (Fig. 5a)."""
    replays = [rp for rp in replays if rp["results"]]
    if not replays:
        return None

    def draw(ax, rp):
        for p in replay_policies(rp):
            rs = [r for r in rp["results"] if r["policy"] == p]
            xs = [r["budget"] for r in rs]
            color = policy_color(p)
            ax.fill_between(xs, [r["p10"] for r in rs], [r["p90"] for r in rs], color=color,
                            alpha=0.12, lw=0)
            ax.plot(xs, [r["recall"] for r in rs], color=color, ls=policy_style(p),
                    marker="o", ms=3.5, lw=_line_width(p))

    handles = _policy_handles(_all_policies(replays), "p10–p90 over decode steps")
    return _budget_panels(replays, handles, draw, "attention mass captured (recall)",
                          "Attention mass captured vs KV budget (measured on recorded attention "
                          "traces)", fig_dir, log, stem)


def overlap_figure(replays, fig_dir, log, stem="overlap-vs-budget"):
    """Per trace a panel: overlap of adjacent decode steps' selections vs budget (Fig. 6b)."""
    replays = [rp for rp in replays if any(r["overlap"] is not None for r in rp["results"])]
    if not replays:
        return None

    def draw(ax, rp):
        for p in replay_policies(rp):
            rs = [r for r in rp["results"] if r["policy"] == p and r["overlap"] is not None]
            if rs:
                ax.plot([r["budget"] for r in rs], [r["overlap"] for r in rs], color=policy_color(p),
                        ls=policy_style(p), marker="o", ms=3.5, lw=_line_width(p))

    return _budget_panels(replays, _policy_handles(_all_policies(replays)), draw,
                          "overlap of adjacent steps' selections",
                          "Selection overlap of adjacent decode steps vs KV budget (measured on "
                          "recorded attention traces)", fig_dir, log, stem)


def per_layer_figure(replays, fig_dir, log, stem="attention-mass-per-layer"):
    """Per trace a panel: recall per layer at the trace's mid budget, per policy."""
    drawn = []
    for rp in replays:
        b = mid_budget(rp)
        if b is not None:
            drawn.append((rp, b))
    if not drawn:
        return None
    n = len(drawn)
    nrows, ncols = _grid(n)
    pols = _all_policies([rp for rp, _ in drawn])
    handles = _policy_handles(pols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.6 * nrows
                                                    + legend_height_in(len(handles), 6)),
                             squeeze=False)
    for idx, (rp, b) in enumerate(drawn):
        ax = axes[idx // ncols][idx % ncols]
        n_layers = 0
        for p in replay_policies(rp):
            rs = [r for r in rp["results"] if r["policy"] == p and r["budget"] == b
                  and r["per_layer"]]
            if not rs:
                continue
            ys = rs[0]["per_layer"]
            n_layers = max(n_layers, len(ys))
            ax.plot(range(len(ys)), ys, color=policy_color(p), ls=policy_style(p), marker="o",
                    ms=2.5, lw=2.0 if p == "specontext" else 1.2)
        ax.set_ylim(0, 1.02)
        if n_layers:
            ax.set_xlim(-0.5, n_layers - 0.5)
        ax.set_xlabel("layer")
        ax.set_ylabel("attention mass captured (recall)")
        ax.set_title("%s · B=%d" % (trace_title(rp), b), fontsize=9)
    _hide_unused(axes, n, nrows, ncols)
    finish_with_top_legend(fig, handles, "Attention mass captured per layer at a mid budget "
                           "(measured on recorded attention traces)", min(len(handles), 6))
    return save(fig, fig_dir, stem, log)


PREFETCH_POLICY = "specontext"
_LINE_FIELDS = ("hardware", "model", "input", "output", "trace")


def prefetch_lines(rows):
    """{line key: rows} for the prefetch figure: specontext rows per hardware (and model,
    workload and trace when those vary; the request count too when one budget has several)."""
    rows = [r for r in rows if r["policy"] == PREFETCH_POLICY]
    fields = list(_LINE_FIELDS)
    seen = {}
    for r in rows:
        k = tuple(r[f] for f in fields) + (r["system_label"], r["budget"])
        seen.setdefault(k, set()).add(r["requests"])
    if any(len(v) > 1 for v in seen.values()):
        fields.append("requests")
    fields.append("system_label")
    lines = {}
    for r in rows:
        lines.setdefault(tuple(r[f] for f in fields), []).append(r)
    return fields, lines


def prefetch_line_label(fields, key, keys):
    parts = []
    for i, f in enumerate(fields):
        if f == "hardware" or len({k[i] for k in keys}) > 1:
            v = key[i]
            if f == "input":
                v = "in %s" % v
            elif f == "output":
                v = "out %s" % v
            elif f == "requests":
                v = "R=%s" % v
            parts.append(str(v))
    return " · ".join(parts)


def prefetch_figure(rows, fig_dir, log, stem="prefetch-vs-budget"):
    """Fig. 6a: prefetch time per step (left) and H2D MB per step (right) vs budget, per
    hardware, for the specontext policy in trace-sims.csv; x on the axis = infeasible."""
    fields, lines = prefetch_lines(rows or [])
    if not lines:
        return None
    keys = list(lines.keys())
    colors = {k: HARDWARE_COLORS[i % len(HARDWARE_COLORS)] for i, k in enumerate(keys)}
    budgets = sorted({r["budget"] for rs in lines.values() for r in rs if r["budget"]})
    handles = [Line2D([], [], color=colors[k], marker="o", ms=3.5,
                      label=prefetch_line_label(fields, k, keys)) for k in keys]
    handles.append(Line2D([], [], color="#555555", marker="x", ls="none", label="infeasible"))
    ncol = min(len(handles), 4)
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.8 + legend_height_in(len(handles), ncol)),
                             squeeze=False)
    ax_ms, ax_mb = axes[0]
    for k in keys:
        rs = sorted(lines[k], key=lambda r: (r["budget"] or 0, r["requests"] or 0))
        ok = [r for r in rs if r["feasible"] and r["budget"]]
        bad = [r for r in rs if not r["feasible"] and r["budget"]]
        c = colors[k]
        pts = [r for r in ok if r["prefetch_ms"] is not None]
        ax_ms.plot([r["budget"] for r in pts], [r["prefetch_ms"] for r in pts], color=c,
                   marker="o", ms=3.5, lw=1.5)
        pts = [r for r in ok if r["h2d_bytes_per_step"] is not None]
        ax_mb.plot([r["budget"] for r in pts], [r["h2d_bytes_per_step"] / 1e6 for r in pts],
                   color=c, marker="o", ms=3.5, lw=1.5)
        for ax in (ax_ms, ax_mb):
            if bad:
                ax.plot([r["budget"] for r in bad], [0] * len(bad), color=c, marker="x", ms=7,
                        mew=2, ls="none", clip_on=False)
    for ax, ylabel in ((ax_ms, "prefetch per decode step (ms)"),
                       (ax_mb, "H2D per decode step (MB)")):
        budget_axis(ax, budgets)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("KV budget B (tokens per head)")
        ax.set_ylabel(ylabel)
    ax_ms.set_title("prefetch time: H2D bytes / host-link bandwidth")
    ax_mb.set_title("bytes moved over the host link per step")
    models = distinct(list(r for rs in lines.values() for r in rs), "model")
    finish_with_top_legend(fig, handles, "Prefetch per decode step vs KV budget: %s with the "
                           "trace's measured overlap (simulated%s)"
                           % (PREFETCH_POLICY, ", " + models[0] if len(models) == 1 else ""),
                           ncol)
    return save(fig, fig_dir, stem, log)
