"""Figure 3: GPU-resident layers vs sequence length S, one line per memory plan."""

from matplotlib.ticker import MultipleLocator

from plans import plan_label
from style import plt, save

_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
           "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


def _fmt_tokens(v, _pos=None):
    if v >= 1024 and v % 1024 == 0:
        return "%dK" % (v // 1024)
    if v >= 1024:
        return "%.1fK" % (v / 1024.0)
    return "%d" % v


def figure(plans, fig_dir, log, stem="memory-placement"):
    if not plans:
        return None
    finite = [s[0] for p in plans for s in p["segments"]]
    finite += [s[1] for p in plans for s in p["segments"] if s[1] is not None]
    finite += [t for p in plans for t in p["thresholds"] if t is not None and t > 0]
    x_max = max(finite + [1]) * 1.08
    x_min = min(s[0] for p in plans for s in p["segments"])
    max_layers = max(p["layers"] for p in plans)
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    for i, p in enumerate(plans):
        color = _COLORS[i % len(_COLORS)]
        xs = [s[0] for s in p["segments"]]
        ys = [s[2] for s in p["segments"]]
        last_to = p["segments"][-1][1]
        xs.append(last_to if last_to is not None else x_max)
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", color=color, lw=2.0, label=plan_label(p),
                zorder=3 + i * 0.01)
        for t in p["thresholds"]:
            if t is not None and x_min <= t <= x_max:
                ax.axvline(t, color=color, lw=0.7, ls=":", alpha=0.6, zorder=1)
    ax.plot([], [], color="black", lw=0.7, ls=":", label="thresholds $S_l^T$ (plan colour)")
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(-0.5, max_layers + 0.5)
    ax.set_xlabel("sequence length S (tokens)")
    ax.set_ylabel("layers with KV on GPU")
    span = x_max - x_min
    step = next((st for st in (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072,
                               262144, 524288, 1048576) if span / st <= 10), None)
    if step:
        ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(_fmt_tokens))
    ax.set_title("Adaptive memory placement over S (simulated plans)")
    ax.legend(loc="upper right" if len(plans) < 5 else "center left",
              bbox_to_anchor=None if len(plans) < 5 else (1.01, 0.5))
    fig.tight_layout()
    return save(fig, fig_dir, stem, log)
