"""Accuracy against measured throughput (`engine/*.json`, made by bench/engine_pareto_rows.py): the
engine's decode step timed on the GPU per policy x budget at the paper's model shape, paired with
the accuracy measured on SmolLM2 (accuracy/*.json) for the same policy at the same budget fraction
of the context (B_engine / depth = B_accuracy / context), since the accuracy model is small and its
contexts short. A pair is one point of an accuracy-vs-throughput Pareto front; the dense engine
run is the point (dense throughput, 1)."""

import os
from fractions import Fraction

from attention import _number, _string, pareto_front
from results import InputError, load_each, load_json_object


def read_engine_pareto(path):
    """{'name', 'path', 'what', 'machine', 'rows': [{'policy', 'budget' (None for full), 'depth',
    'requests', 'tokens_per_s', 'median_ms', 'min_ms', 'max_ms', 'overlap'}]}."""
    doc = load_json_object(path)
    raw = doc.get("rows")
    if not isinstance(raw, list) or not raw:
        raise InputError("%s: field 'rows': missing, empty or not a list" % path)
    rows = []
    for i, r in enumerate(raw):
        where = "rows[%d]" % i
        if not isinstance(r, dict):
            raise InputError("%s: field '%s': expected an object" % (path, where))
        policy = _string(r.get("policy"), path, where + ".policy")
        row = {"policy": policy,
               "budget": _number(r.get("budget"), path, where + ".budget", integer=True,
                                 positive=True) if policy != "full" else None,
               "overlap": _number(r.get("overlap"), path, where + ".overlap", allow_none=True,
                                  fraction=True)}
        for k in ("depth", "requests"):
            row[k] = _number(r.get(k), path, "%s.%s" % (where, k), integer=True, positive=True)
        for k in ("tokens_per_s", "median_ms", "min_ms", "max_ms"):
            row[k] = _number(r.get(k), path, "%s.%s" % (where, k), positive=True)
        rows.append(row)
    what, machine = doc.get("what"), doc.get("machine")
    return {"name": os.path.splitext(os.path.basename(path))[0], "path": path,
            "what": what if isinstance(what, str) else "",
            "machine": machine if isinstance(machine, str) else "", "rows": rows}


def load_engine_pareto(engine_dir, log):
    return load_each(engine_dir, "*.json", read_engine_pareto, log,
                     ("measured engine throughput", "the accuracy-vs-throughput front is skipped"),
                     lambda f: "%d rows" % len(f["rows"]))


def engine_pareto_panels(engine_files, acc_rows):
    """Per (accuracy task, context, engine file, depth, requests) with at least one pair:
    {'task', 'context', 'engine', 'depth', 'requests', 'dense' (the engine's full row or None),
    'points': [{'policy', 'budget' (the accuracy run's), 'engine_budget', 'tokens_per_s',
    'median_ms', 'min_ms', 'max_ms', 'normalised', 'accuracy', 'source', 'overlap'}],
    'front': the non-dominated points, dense included, by (tokens/s, accuracy / dense)}.

    Only the retrieval head as the paper runs it pairs (a variant, e.g. the embed head input, has no
    engine run of its own); rows without a dense reference are left out."""
    panels = []
    for ef in engine_files:
        for depth, requests in sorted({(r["depth"], r["requests"]) for r in ef["rows"]}):
            at = [r for r in ef["rows"] if r["depth"] == depth and r["requests"] == requests]
            dense = next((r for r in at if r["policy"] == "full"), None)
            for task, context in sorted({(a["task"], a["context"]) for a in acc_rows}):
                points = []
                for a in acc_rows:
                    if (a["task"], a["context"]) != (task, context) or a["policy"] == "full" \
                            or not a.get("default_head", True) or a["normalised"] is None or not a["budget"]:
                        continue
                    for e in at:
                        if e["policy"] == a["policy"] and e["budget"] and \
                                Fraction(e["budget"], depth) == Fraction(a["budget"], context):
                            points.append({"policy": a["policy"], "budget": a["budget"],
                                           "engine_budget": e["budget"], "tokens_per_s": e["tokens_per_s"],
                                           "median_ms": e["median_ms"], "min_ms": e["min_ms"],
                                           "max_ms": e["max_ms"], "normalised": a["normalised"],
                                           "accuracy": a["accuracy"], "source": a["source"],
                                           "backend": a["backend"], "overlap": e["overlap"]})
                if not points:
                    continue
                cands = [(p["tokens_per_s"], p["normalised"], p) for p in points]
                if dense:
                    cands.append((dense["tokens_per_s"], 1.0, None))
                front = [c[2] for c in pareto_front(cands)]
                panels.append({"task": task, "context": context, "engine": ef["name"], "depth": depth,
                               "requests": requests, "dense": dense, "points": points, "front": front})
    return panels
