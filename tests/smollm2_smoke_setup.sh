# Sourced by the SmolLM2 smoke scripts (tests/*_smoke.sh): their arguments are the specontext binary
# and an output folder (emptied here); sets specontext, out, root and gguf, and skips the test (77)
# without the GGUF that scripts/fetch_smollm2.sh fetches.
set -euo pipefail
specontext=$1
out=$2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
gguf="$root/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$gguf" ] || { echo "no SmolLM2 GGUF: skipped"; exit 77; }
rm -rf "$out" && mkdir -p "$out"
