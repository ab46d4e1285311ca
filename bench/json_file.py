"""Reading a JSON file for the bench/ scripts: a missing or malformed file stops the script with a
message naming the script and the file (imported as `from json_file import read_json`; the scripts
run as python3 bench/NAME.py, so bench/ is on the path)."""
import json
import sys


def read_json(path, tool):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"{tool}: {path}: {e}")
