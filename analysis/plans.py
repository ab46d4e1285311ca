"""Reading memory plans (`plans/*.json`): GPU-resident layers as a function of S."""

import math
import os

from results import InputError, load_each, load_json_object


def _num(value, path, field, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str) and value.lower() in ("inf", "infinity") and allow_none:
            return None
        raise InputError("%s: field '%s': expected a number, got %r" % (path, field, value))
    if isinstance(value, float) and math.isinf(value) and allow_none:
        return None
    return value


def read_plan(path):
    """A plan dict with 'segments' [(from, to or None, gpu_layers, cpu_layers)] and
    'thresholds' [S or None] (None: never reached / unbounded)."""
    doc = load_json_object(path)
    segs_raw = doc.get("layers_on_gpu_at")
    if not isinstance(segs_raw, list) or not segs_raw:
        raise InputError("%s: field 'layers_on_gpu_at': missing or not a non-empty list" % path)
    segments = []
    for i, seg in enumerate(segs_raw):
        where = "layers_on_gpu_at[%d]" % i
        if not isinstance(seg, dict):
            raise InputError("%s: field '%s': expected an object" % (path, where))
        for k in ("from", "gpu_layers"):
            if k not in seg:
                raise InputError("%s: field '%s.%s' is missing" % (path, where, k))
        s_from = _num(seg["from"], path, where + ".from")
        s_to = _num(seg.get("to"), path, where + ".to", allow_none=True)
        gpu = _num(seg["gpu_layers"], path, where + ".gpu_layers")
        cpu = _num(seg.get("cpu_layers"), path, where + ".cpu_layers", allow_none=True)
        if s_to is not None and s_to < s_from:
            raise InputError("%s: field '%s.to' (%s) is below '%s.from' (%s)"
                             % (path, where, s_to, where, s_from))
        segments.append((s_from, s_to, gpu, cpu))
    segments.sort(key=lambda s: s[0])
    thresholds_raw = doc.get("thresholds", [])
    if not isinstance(thresholds_raw, list):
        raise InputError("%s: field 'thresholds': expected a list" % path)
    thresholds = [_num(t, path, "thresholds[%d]" % i, allow_none=True)
                  for i, t in enumerate(thresholds_raw)]
    layers = doc.get("layers")
    if layers is None:
        layers = max(s[2] + (s[3] or 0) for s in segments)
    return {
        "path": path,
        "name": os.path.splitext(os.path.basename(path))[0],
        "model": str(doc.get("model", "?")),
        "hardware": str(doc.get("hardware", "?")),
        "requests": doc.get("requests"),
        "budget": doc.get("budget"),
        "gpu_memory_bytes": doc.get("gpu_memory_bytes"),
        "layers": _num(layers, path, "layers"),
        "thresholds": thresholds,
        "segments": segments,
    }


def plan_label(plan):
    bits = [plan["model"], plan["hardware"]]
    if plan["requests"] is not None:
        bits.append("R=%s" % plan["requests"])
    if plan["budget"] is not None:
        bits.append("B=%s" % plan["budget"])
    return ", ".join(bits)


def load_plans(plans_dir, log):
    return load_each(plans_dir, "*.json", read_plan, log,
                     ("memory plans", "the placement figure is skipped"))
