"""Reading and validating the attention-trace inputs of `specontext reproduce`.

Three inputs, each optional (a missing folder or file gives an empty result):

- `attention/NAME.replay.json`: `specontext replay --json` of a recorded attention trace:
  recall (attention mass captured) and overlap of adjacent steps per policy and budget.
- `csv/trace-sims.csv`: paper-scale simulations driven by a trace's measured overlap.
- `accuracy/*.json`: measured accuracy of real sparse runs of the engine; rows of policy
  `full` are the dense reference for their context.

Also the pure helpers the figures and the report share: policy order, the Pareto front and
the accuracy normalisation.
"""

import json
import math
import os

from results import (InputError, load_each, load_json_object, _parse_bool, components_key, system_label, typed_csv_rows,
                     workload_label)

# Display order of selection policies (the oracle, an upper bound, first).
POLICY_ORDER = ("oracle", "oracle-shared", "specontext", "specontext-batch", "quest", "streaming")

# Recall and overlap are fractions; binary16 probabilities may sum a little above 1.
FRACTION_SLACK = 0.01


def policy_order(name):
    try:
        return (POLICY_ORDER.index(name), name)
    except ValueError:
        return (len(POLICY_ORDER), name)


def label_order(label):
    """Sort key of a series label that starts with a policy name ('specontext · cpu')."""
    return policy_order(label.split(" ")[0]) + (label,)


def _is_number(v):
    return not isinstance(v, bool) and isinstance(v, (int, float))


def _number(value, path, field, allow_none=False, fraction=False, integer=False,
            positive=False):
    """A JSON value checked to be a (finite) number; InputError naming file and field."""
    if value is None:
        if allow_none:
            return None
        raise InputError("%s: field '%s' is missing or null (expected a number)" % (path, field))
    if not _is_number(value):
        raise InputError("%s: field '%s': expected a number, got %r" % (path, field, value))
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise InputError("%s: field '%s': expected a finite number, got %r" % (path, field, value))
    if integer:
        if value != int(value):
            raise InputError("%s: field '%s': expected an integer, got %r" % (path, field, value))
        value = int(value)
    if positive and value <= 0:
        raise InputError("%s: field '%s': expected a positive number, got %r"
                         % (path, field, value))
    if fraction and not (-FRACTION_SLACK <= value <= 1.0 + FRACTION_SLACK):
        raise InputError("%s: field '%s': expected a fraction in [0, 1], got %r"
                         % (path, field, value))
    return value


def _string(value, path, field, allow_none=False, allow_empty=False):
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise InputError("%s: field '%s': expected a string, got %r" % (path, field, value))
    if not value.strip() and not allow_empty:
        raise InputError("%s: field '%s' is empty" % (path, field))
    return value


# --------------------------------------------------------------------------- replay JSON

# Header fields shown in titles and the report; each optional, type-checked when present.
_HEADER_STRINGS = ("model", "draft", "task", "prompt_source", "backend", "config_hash")
_HEADER_INTS = ("layers", "q_heads", "kv_heads", "head_dim", "b_max", "prompt_tokens", "max_new",
                "requests")


def _replay_name(path):
    base = os.path.basename(path)
    return base[:-len(".replay.json")] if base.endswith(".replay.json") else \
        os.path.splitext(base)[0]


def read_replay(path):
    """One replay: {'name', 'path', 'file', 'target', 'trace': header, 'results': [...]}.

    Each result: {'policy', 'budget', 'recall' (mean), 'recall_min', 'recall_max', 'p10',
    'p90', 'per_layer' [float], 'overlap' (None: no two steps), 'selected',
    'load_bytes_per_step' (None without a target)}, sorted by policy order then budget.
    """
    doc = load_json_object(path)
    header = doc.get("trace")
    if not isinstance(header, dict):
        raise InputError("%s: field 'trace': missing or not an object (the trace's header)"
                         % path)
    trace = {}
    for k in _HEADER_STRINGS:
        trace[k] = _string(header.get(k), path, "trace." + k, allow_none=True, allow_empty=True)
    for k in _HEADER_INTS:
        trace[k] = _number(header.get(k), path, "trace." + k, allow_none=True, integer=True)
    pols = header.get("policies", [])
    if not isinstance(pols, list):
        raise InputError("%s: field 'trace.policies': expected a list" % path)
    trace["policies"] = []
    for i, p in enumerate(pols):
        if not isinstance(p, dict):
            raise InputError("%s: field 'trace.policies[%d]': expected an object" % (path, i))
        trace["policies"].append({
            "name": _string(p.get("name"), path, "trace.policies[%d].name" % i),
            "per_layer": bool(p.get("per_layer", False)),
            "head_level": bool(p.get("head_level", False)),
            "page_size": _number(p.get("page_size", 1), path, "trace.policies[%d].page_size" % i,
                                 integer=True),
        })
    results_raw = doc.get("results")
    if not isinstance(results_raw, list):
        raise InputError("%s: field 'results': missing or not a list" % path)
    results = []
    seen = set()
    for i, r in enumerate(results_raw):
        where = "results[%d]" % i
        if not isinstance(r, dict):
            raise InputError("%s: field '%s': expected an object" % (path, where))
        policy = _string(r.get("policy"), path, where + ".policy")
        budget = _number(r.get("budget"), path, where + ".budget", integer=True, positive=True)
        if (policy, budget) in seen:
            raise InputError("%s: field '%s': policy %r at budget %d appears twice"
                             % (path, where, policy, budget))
        seen.add((policy, budget))
        rec = r.get("recall")
        if not isinstance(rec, dict):
            raise InputError("%s: field '%s.recall': missing or not an object" % (path, where))
        vals = {k: _number(rec.get(k), path, "%s.recall.%s" % (where, k), fraction=True)
                for k in ("mean", "min", "max", "p10", "p90")}
        per_layer_raw = rec.get("per_layer", [])
        if not isinstance(per_layer_raw, list):
            raise InputError("%s: field '%s.recall.per_layer': expected a list" % (path, where))
        per_layer = [_number(v, path, "%s.recall.per_layer[%d]" % (where, j), fraction=True)
                     for j, v in enumerate(per_layer_raw)]
        results.append({
            "policy": policy,
            "budget": budget,
            "recall": vals["mean"],
            "recall_min": vals["min"],
            "recall_max": vals["max"],
            "p10": vals["p10"],
            "p90": vals["p90"],
            "per_layer": per_layer,
            "overlap": _number(r.get("overlap"), path, where + ".overlap", allow_none=True,
                               fraction=True),
            "selected": _number(r.get("selected"), path, where + ".selected", allow_none=True),
            "load_bytes_per_step": _number(r.get("load_bytes_per_step"), path,
                                           where + ".load_bytes_per_step", allow_none=True),
        })
    results.sort(key=lambda r: (policy_order(r["policy"]), r["budget"]))
    target = doc.get("target")
    return {
        "name": _replay_name(path),
        "path": path,
        "file": _string(doc.get("file"), path, "file", allow_none=True, allow_empty=True),
        "target": _string(target, path, "target", allow_none=True, allow_empty=True),
        "trace": trace,
        "results": results,
    }


def load_replays(attention_dir, log):
    """Every DIR/attention/*.replay.json, sorted by name; [] when there are none."""
    return load_each(attention_dir, "*.replay.json", read_replay, log,
                     ("attention replays", "the attention-mass and overlap figures are skipped"),
                     lambda r: "%d results" % len(r["results"]))


def replay_policies(replay):
    seen = []
    for r in replay["results"]:
        if r["policy"] not in seen:
            seen.append(r["policy"])
    return sorted(seen, key=policy_order)


def replay_budgets(replay):
    return sorted({r["budget"] for r in replay["results"]})


def mid_budget(replay):
    """The budget for the per-layer view: the median of the budgets every policy has (the
    upper one of an even count); None when there is none."""
    pols = replay_policies(replay)
    common = None
    for p in pols:
        bs = {r["budget"] for r in replay["results"] if r["policy"] == p and r["per_layer"]}
        common = bs if common is None else common & bs
    if not common:
        common = {r["budget"] for r in replay["results"] if r["per_layer"]}
    if not common:
        return None
    bs = sorted(common)
    return bs[len(bs) // 2]


# --------------------------------------------------------------------------- trace-sims.csv

SIM_COLUMNS = (
    "trace", "policy", "system", "components", "hardware", "model", "input", "output",
    "requests", "budget", "trace_budget", "recall", "overlap", "feasible", "reason",
    "throughput_tok_s", "decode_throughput_tok_s", "mean_step_ms", "h2d_bytes_per_step",
    "prefetch_ms", "peak_gpu_bytes",
)
SIM_INT_COLUMNS = ("input", "output", "requests", "budget", "trace_budget")
SIM_FLOAT_COLUMNS = ("recall", "overlap", "throughput_tok_s", "decode_throughput_tok_s",
                     "mean_step_ms", "h2d_bytes_per_step", "prefetch_ms", "peak_gpu_bytes")
# Simulated results only meaningful for a feasible row.
_SIM_RESULT_COLUMNS = ("throughput_tok_s", "decode_throughput_tok_s", "mean_step_ms",
                       "h2d_bytes_per_step", "prefetch_ms", "peak_gpu_bytes")


def read_trace_sims(path):
    """Rows of trace-sims.csv as typed dicts (InputError naming file, line and column)."""
    rows = []
    for line, raw, row in typed_csv_rows(path, SIM_COLUMNS, SIM_INT_COLUMNS, SIM_FLOAT_COLUMNS):
        for c in SIM_FLOAT_COLUMNS:
            v = row[c]
            if v is not None and (math.isnan(v) or math.isinf(v)):
                row[c] = None
        row["feasible"] = _parse_bool(raw["feasible"], path, line, "feasible")
        for c in ("trace", "policy", "system", "hardware"):
            if not row[c]:
                raise InputError("%s: line %d: column '%s' is empty" % (path, line, c))
        for c in ("recall", "overlap"):
            v = row[c]
            if v is not None and not (-FRACTION_SLACK <= v <= 1.0 + FRACTION_SLACK):
                raise InputError("%s: line %d: column '%s': expected a fraction in [0, 1], "
                                 "got %r" % (path, line, c, raw[c]))
        if not row["feasible"]:
            for c in _SIM_RESULT_COLUMNS:
                row[c] = None
        row["system_label"] = system_label(row["system"], row["components"])
        row["components_key"] = components_key(row["components"])
        rows.append(row)
    return rows


def load_trace_sims(csv_dir, log):
    """Rows of DIR/csv/trace-sims.csv, or None when the file is absent."""
    path = os.path.join(csv_dir, "trace-sims.csv")
    if not os.path.isfile(path):
        log("note: %s not found; the Pareto and prefetch figures are skipped" % path)
        return None
    rows = read_trace_sims(path)
    log("read %s (%d rows)" % (path, len(rows)))
    return rows


def sim_point_label(row, rows):
    """The policy, plus the simulated system when one policy is simulated as several."""
    systems = {r["system_label"] for r in rows if r["policy"] == row["policy"]}
    if len(systems) > 1:
        return "%s · %s" % (row["policy"], row["system_label"])
    return row["policy"]


def pareto_front(points):
    """The non-dominated points of `points`, higher being better on both axes.

    `points` are tuples (x, y, ...): anything after x and y is carried along untouched.
    A point is dominated when another has x and y at least as large and one of them larger;
    of identical (x, y) points the first is kept. Points with x or y None are ignored.
    Returns the front sorted by x ascending (so y descending): the step function
    "max y over points with x' >= x".
    """
    cands = [(i, p) for i, p in enumerate(points) if p[0] is not None and p[1] is not None]
    cands.sort(key=lambda ip: (-ip[1][0], -ip[1][1], ip[0]))
    front = []
    best_y = None
    for _, p in cands:
        if best_y is None or p[1] > best_y:
            front.append(p)
            best_y = p[1]
    front.reverse()
    return front


# --------------------------------------------------------------------------- accuracy/*.json

# Row keys with a meaning here; every other key is ignored, except that a string-valued one
# telling apart two rows of the same policy, budget and context names a variant.
_ACC_KNOWN = ("policy", "budget", "context", "accuracy", "overlap_rate", "backend", "seed",
              "trials", "correct", "task", "metric", "perplexity", "attention_mass")


def _trial_count(row):
    t = row.get("trials")
    if isinstance(t, list):
        return len(t)
    if _is_number(t):
        return int(t)
    c = row.get("correct")
    if isinstance(c, list):
        return len(c)
    return None


def _variant_keys(raw_rows):
    """Keys (outside _ACC_KNOWN, with string/bool/null values, or backend/seed) that differ
    between rows sharing policy, budget and context; per policy."""
    groups = {}
    for r in raw_rows:
        groups.setdefault((r.get("policy"), r.get("budget"), r.get("context"), r.get("task")), []).append(r)
    keys = {}
    for (policy, _, _, _), rs in groups.items():
        if len(rs) < 2:
            continue
        names = set()
        for r in rs:
            names.update(r.keys())
        for k in sorted(names):
            if k in _ACC_KNOWN and k not in ("backend", "seed"):
                continue
            vals = [r.get(k) for r in rs]
            if any(v is not None and not isinstance(v, (str, bool, int)) for v in vals):
                continue
            if k not in ("backend", "seed") and any(_is_number(v) for v in vals):
                continue
            if len({json.dumps(v) for v in vals}) > 1:
                keys.setdefault(policy, [])
                if k not in keys[policy]:
                    keys[policy].append(k)
    return keys


def read_accuracy(path):
    """{'name', 'path', 'what', 'machine', 'rows': [...]} of one accuracy results file.

    Each row: {'policy', 'budget' (None for full; a sparse row without one is listed in the
    report but not drawn), 'task' (the row's, else the file's, else ''), 'context', 'accuracy',
    'overlap_rate',
    'backend', 'seed', 'trials' (a count or None), 'variant' ('' or 'key=value, ...'),
    'default_head' (no head input or pooling but the paper's), 'source' (the file's name)}.
    """
    doc = load_json_object(path)
    rows_raw = doc.get("rows")
    if not isinstance(rows_raw, list):
        raise InputError("%s: field 'rows': missing or not a list" % path)
    for i, r in enumerate(rows_raw):
        if not isinstance(r, dict):
            raise InputError("%s: field 'rows[%d]': expected an object" % (path, i))
    name = os.path.splitext(os.path.basename(path))[0]
    variants = _variant_keys(rows_raw)
    rows = []
    for i, r in enumerate(rows_raw):
        where = "rows[%d]" % i
        policy = _string(r.get("policy"), path, where + ".policy")
        budget = _number(r.get("budget"), path, where + ".budget", allow_none=True,
                         integer=True, positive=True)
        backend = r.get("backend")
        variant = ", ".join("%s=%s" % (k, "none" if r.get(k) is None else r.get(k))
                            for k in variants.get(policy, []))
        task = r.get("task", doc.get("task"))
        rows.append({
            "policy": policy,
            "budget": budget if policy != "full" else None,
            "task": str(task) if task is not None else "",
            "context": _number(r.get("context"), path, where + ".context", integer=True,
                               positive=True),
            "accuracy": _number(r.get("accuracy"), path, where + ".accuracy", fraction=True),
            "overlap_rate": _number(r.get("overlap_rate"), path, where + ".overlap_rate",
                                    allow_none=True, fraction=True),
            "backend": str(backend) if backend is not None else "",
            "seed": r.get("seed"),
            "trials": _trial_count(r),
            "variant": variant,
            # The retrieval head as the paper runs it (eagle input, no pooling), whatever else varies.
            "default_head": r.get("head_input") in (None, "eagle") and r.get("head_pooling") in (None, "none"),
            "source": name,
        })
    what = doc.get("what")
    machine = doc.get("machine")
    return {"name": name, "path": path,
            "what": what if isinstance(what, str) else "",
            "machine": machine if isinstance(machine, str) else "",
            "rows": rows}


def load_accuracy(accuracy_dir, log):
    """Every DIR/accuracy/*.json, sorted by name; [] when there are none."""
    return load_each(accuracy_dir, "*.json", read_accuracy, log,
                     ("accuracy results", "the accuracy figure is skipped"),
                     lambda f: "%d rows" % len(f["rows"]))


def normalise_accuracy(files):
    """Every accuracy row with 'dense' (the reference accuracy or None), 'dense_source' and
    'normalised' (accuracy / dense, None when there is no reference or it is 0).

    The reference of a row is the `full` row of the same task and context: from the same file when
    it has one (the same backend preferred), else from another file with the same context
    and backend (the first by file name); else there is none.
    """
    out = []
    for fi, f in enumerate(files):
        for r in f["rows"]:
            ref = None
            same = [x for x in f["rows"] if x["policy"] == "full"
                    and x["context"] == r["context"] and x["task"] == r["task"]]
            same_backend = [x for x in same if x["backend"] == r["backend"]]
            if same_backend or same:
                ref = (same_backend or same)[0]
            else:
                for g in files:
                    if g is f:
                        continue
                    cand = [x for x in g["rows"] if x["policy"] == "full" and x["task"] == r["task"]
                            and x["context"] == r["context"] and x["backend"] == r["backend"]]
                    if cand:
                        ref = cand[0]
                        break
            row = dict(r)
            row["file_index"] = fi
            row["dense"] = ref["accuracy"] if ref else None
            row["dense_source"] = ref["source"] if ref else None
            row["normalised"] = (r["accuracy"] / ref["accuracy"]
                                 if ref and ref["accuracy"] > 0 else None)
            out.append(row)
    return out


def accuracy_series_label(row, rows):
    """Policy (and variant); plus the backend, or the file, when several files have rows of
    that policy and variant (in any context), so that a label means the same in every panel."""
    base = row["policy"] + (" (%s)" % row["variant"] if row["variant"] else "")
    same = [r for r in rows if r["policy"] == row["policy"] and r["variant"] == row["variant"]]
    sources = {r["source"] for r in same}
    if len(sources) <= 1:
        return base
    by_backend = {}
    for r in same:
        by_backend.setdefault(r["backend"], set()).add(r["source"])
    if all(len(v) == 1 for v in by_backend.values()):
        return "%s · %s" % (base, row["backend"] or "?")
    return "%s · %s" % (base, row["source"])

PARETO_PANEL_FIELDS = ("hardware", "model", "input", "output", "trace")


def pareto_groups(rows):
    """trace-sims rows per Pareto panel (hardware, and model, workload and trace).

    Returns [{'key', 'hardware', 'model', 'input', 'output', 'trace', 'points' (feasible
    rows with a throughput and a recall), 'front' (the non-dominated ones, by throughput
    ascending), 'left_out' (the other rows: infeasible or without a number)}] in input order.
    """
    out = []
    for key in distinct_keys(rows or [], PARETO_PANEL_FIELDS):
        prow = [r for r in rows if tuple(r[f] for f in PARETO_PANEL_FIELDS) == key]
        points = [r for r in prow if r["feasible"] and r["throughput_tok_s"] is not None
                  and r["recall"] is not None]
        front = [p[2] for p in pareto_front([(r["throughput_tok_s"], r["recall"], r)
                                             for r in points])]
        g = dict(zip(PARETO_PANEL_FIELDS, key))
        g.update({"key": key, "rows": prow, "points": points, "front": front,
                  "left_out": [r for r in prow if not any(r is p for p in points)]})
        out.append(g)
    return out


def distinct_keys(rows, fields):
    seen = []
    for r in rows:
        k = tuple(r[f] for f in fields)
        if k not in seen:
            seen.append(k)
    return seen


def pareto_title(group, groups):
    """Hardware, model and workload; the trace when the panels differ in it."""
    t = "%s · %s · %s" % (group["hardware"], group["model"] or "?",
                          workload_label(group, compact=True))
    if len({g["trace"] for g in groups}) > 1:
        t += " · trace %s" % group["trace"]
    return t
