"""Reading a JSON file for the bench/ scripts: a missing or malformed file stops the script with a
message naming the script and the file (imported as `from json_file import read_json`; the scripts
run as python3 bench/NAME.py, so bench/ is on the path). A name ending in .xz is decompressed (the
committed profile traces are)."""
import json
import lzma
import sys


def read_json(path, tool):
    try:
        with (lzma.open(path, "rt") if str(path).endswith(".xz") else open(path)) as f:
            return json.load(f)
    except (OSError, lzma.LZMAError, json.JSONDecodeError) as e:
        sys.exit(f"{tool}: {path}: {e}")
