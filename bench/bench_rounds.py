"""`specontext bench --json` runs read as rounds, for the bench/ tables (ab_table.py, engine_vs_hf.py;
imported as `from bench_rounds import ...`: the scripts run as python3 bench/NAME.py, so bench/ is on
the path). A round is one bench run's points that fit, by (R, depth); a cell summarises one point
over the rounds: the median of the rounds' median ms/step and the min-max over every repetition of
every round."""
import statistics
import sys

from json_file import read_json

POINT_FIELDS = ("requests", "depth", "median_ms", "ms_per_rep", "roofline_ms")


def read_round(path, tool):
    """The points of one bench JSON that fit, by (requests, depth), and the document itself. A file
    that is not bench output stops the tool with a message naming the file."""
    doc = read_json(path, tool)
    points = doc.get("points") if isinstance(doc, dict) else None
    if not isinstance(points, list):
        sys.exit("%s: %s: not `specontext bench --json` output (no 'points' list)" % (tool, path))
    by_point = {}
    for p in points:
        if not p.get("fits", False):
            continue
        for field in POINT_FIELDS:
            if field not in p:
                sys.exit("%s: %s: a point has no '%s'" % (tool, path, field))
        by_point[(p["requests"], p["depth"])] = p
    return by_point, doc


def cell(rounds, key):
    """One point over the rounds that have it (None where none has)."""
    points = [r[key] for r in rounds if key in r]
    if not points:
        return None
    reps = [ms for p in points for ms in p["ms_per_rep"]]
    return {"median": statistics.median(p["median_ms"] for p in points), "min": min(reps), "max": max(reps),
            "roofline_ms": points[0]["roofline_ms"], "rounds": len(points)}
