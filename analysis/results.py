"""Reading and validating the CSV rows that `specontext reproduce` writes.

One concept: a result row (one system on one hardware/model/workload) and the
lookups the figures and the report share (labels, ordering, speedups).
"""

import csv
import glob
import json
import os
import re


class InputError(Exception):
    """An input file is malformed; the message names the file and the field."""


def load_json_object(path):
    """The JSON object in `path`; InputError naming the file when it is not JSON or not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except ValueError as e:
        raise InputError("%s: not valid JSON (%s)" % (path, e))
    if not isinstance(doc, dict):
        raise InputError("%s: expected a JSON object at the top level" % path)
    return doc


def load_each(folder, pattern, read, log, what, count=None):
    """read(path) of every folder/pattern, sorted by name; [] (and a note naming what is
    skipped) when there are none. count(item) -> "N things" for the log line."""
    paths = sorted(glob.glob(os.path.join(folder, pattern)))
    if not paths:
        log("note: no %s (%s); %s" % (what[0], os.path.join(folder, pattern), what[1]))
    out = []
    for p in paths:
        out.append(read(p))
        log("read %s%s" % (p, " (%s)" % count(out[-1]) if count else ""))
    return out


EXPERIMENTS = ("cloud-throughput", "edge-throughput", "budget-sweep", "host-link-whatif")

COLUMNS = (
    "experiment", "hardware", "hardware_variant", "model", "system", "components",
    "budget", "input", "output", "requests_mode", "requests", "gpu_mem_bytes",
    "overlap", "feasible", "reason", "throughput_tok_s", "decode_throughput_tok_s",
    "prefill_s", "decode_s", "peak_gpu_bytes", "peak_host_bytes",
    "h2d_bytes_per_step", "mean_step_ms", "integration_rel_err",
)

INT_COLUMNS = ("budget", "input", "output", "requests", "gpu_mem_bytes")
FLOAT_COLUMNS = (
    "throughput_tok_s", "decode_throughput_tok_s", "prefill_s", "decode_s",
    "peak_gpu_bytes", "peak_host_bytes", "h2d_bytes_per_step", "mean_step_ms",
    "integration_rel_err",
)

# Display order of systems (baselines first, SpeContext ablations last).
SYSTEM_ORDER = ("hf-eager", "hf-flash", "flashinfer", "quest", "clusterkv", "shadowkv",
                "specontext[c1]", "specontext[c1+c2]", "SpeContext")

BASELINES = ("hf-eager", "flashinfer")


def _parse_number(text, kind, path, line, column):
    text = text.strip()
    if text == "" or text.lower() in ("nan", "na", "n/a", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError("%s: line %d: column '%s': cannot read %r as a number"
                         % (path, line, column, text))
    if kind is int:
        if value != int(value):
            raise InputError("%s: line %d: column '%s': expected an integer, got %r"
                             % (path, line, column, text))
        return int(value)
    return value


def _parse_bool(text, path, line, column):
    t = text.strip().lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    raise InputError("%s: line %d: column '%s': expected true or false, got %r"
                     % (path, line, column, text))


def components_key(components):
    """'c3,c1' -> ('c1', 'c3'); tolerant of spaces, '+' separators and empties."""
    parts = [p.strip() for p in re.split(r"[,+;\s]+", components or "") if p.strip()]
    return tuple(sorted(set(parts), key=lambda p: (len(p), p)))


def system_label(system, components):
    """Display name: specontext rows by components; full c1+c2+c3 is 'SpeContext'."""
    if system.lower() != "specontext":
        return system
    comps = components_key(components)
    if not comps or comps == ("c1", "c2", "c3"):
        return "SpeContext"
    return "specontext[%s]" % "+".join(comps)


def label_order(label):
    try:
        return (SYSTEM_ORDER.index(label), label)
    except ValueError:
        return (len(SYSTEM_ORDER), label)


def workload_label(row, compact=False):
    i, o = row["input"], row["output"]
    if compact:
        return "[%s,%s]" % (_kilo(i), _kilo(o))
    return "[%s, %s]" % ("?" if i is None else i, "?" if o is None else o)


def _kilo(n):
    if n is None:
        return "?"
    if n >= 1024 and n % 1024 == 0:
        return "%dK" % (n // 1024)
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


def typed_csv_rows(path, columns, int_columns, float_columns):
    """(line, raw, row) for each non-blank row of a CSV with a header: raw maps every header
    column to its text, row the `columns` to stripped text, ints or floats (None when empty).

    Raises InputError naming the file (and line and column) when the header is missing one of
    `columns`, a row has the wrong number of fields or a number does not parse.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputError("%s: empty file (expected a header row with columns %s)"
                             % (path, ",".join(columns)))
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError("%s: header is missing column%s %s"
                             % (path, "s" if len(missing) > 1 else "",
                                ", ".join("'%s'" % m for m in missing)))
        for fields in reader:
            line = reader.line_num
            if not fields or all(not x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                raise InputError("%s: line %d: %d fields, header has %d (column '%s' %s)"
                                 % (path, line, len(fields), len(header),
                                    header[len(fields)]
                                    if len(fields) < len(header) else header[-1],
                                    "and later are missing" if len(fields) < len(header)
                                    else "is followed by extra fields"))
            raw = dict(zip(header, fields))
            row = {c: raw[c].strip() for c in columns}
            for c in int_columns:
                row[c] = _parse_number(raw[c], int, path, line, c)
            for c in float_columns:
                row[c] = _parse_number(raw[c], float, path, line, c)
            yield line, raw, row


def read_csv(path):
    """Rows of one experiment CSV as dicts with typed values.

    Raises InputError naming the file (and line and column) when the header is
    missing a column, a row has the wrong number of fields or a value does not
    parse.
    """
    rows = []
    for line, raw, row in typed_csv_rows(path, COLUMNS, INT_COLUMNS, FLOAT_COLUMNS):
        row["feasible"] = _parse_bool(raw["feasible"], path, line, "feasible")
        mode = row["requests_mode"].lower()
        if mode not in ("best", "fixed"):
            raise InputError("%s: line %d: column 'requests_mode': expected best or "
                             "fixed, got %r" % (path, line, row["requests_mode"]))
        row["requests_mode"] = mode
        if not row["system"]:
            raise InputError("%s: line %d: column 'system' is empty" % (path, line))
        row["label"] = system_label(row["system"], row["components"])
        if not row["feasible"]:
            row["throughput_tok_s"] = None
        rows.append(row)
    return rows


def load_experiments(csv_dir, log):
    """{experiment: rows} for each CSV present; absent experiments are left out."""
    out = {}
    for name in EXPERIMENTS:
        path = os.path.join(csv_dir, name + ".csv")
        if not os.path.isfile(path):
            log("note: %s not found; its figure and table are skipped" % path)
            continue
        out[name] = read_csv(path)
        log("read %s (%d rows)" % (path, len(out[name])))
    return out


def speedup(row, rows, baseline):
    """Throughput of `row` over the `baseline` system's in the same comparable group.

    Each system is compared at its own request count (for requests_mode 'best'
    each runs at its own best R). A baseline row with the same budget is
    preferred when there are several. Returns (value or None, why-not or None).
    """
    if row["system"] == baseline:
        base = row
    else:
        cands = [r for r in rows if r["system"] == baseline
                 and r["experiment"] == row["experiment"] and comparable(r, row)]
        same_budget = [r for r in cands if r["budget"] == row["budget"]]
        base = (same_budget or cands or [None])[0]
    if not row["feasible"] or row["throughput_tok_s"] is None:
        return None, "infeasible"
    if base is None:
        return None, "no %s row" % baseline
    if not base["feasible"] or not base["throughput_tok_s"]:
        return None, "%s infeasible" % baseline
    return row["throughput_tok_s"] / base["throughput_tok_s"], None


def comparable(a, b):
    """Same hardware, variant, model, workload and request mode."""
    keys = ("hardware", "hardware_variant", "model", "input", "output", "requests_mode")
    return all(a[k] == b[k] for k in keys)


def distinct(rows, key):
    seen = []
    for r in rows:
        v = key(r) if callable(key) else r[key]
        if v not in seen:
            seen.append(v)
    return seen


def infeasible_tag(reason):
    """Short label drawn on figures for an infeasible system."""
    if re.search(r"oom|out of memory|memory|does not fit|capacity|exceed", reason or "", re.I):
        return "OOM"
    return "n/a"
