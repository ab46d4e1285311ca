#!/usr/bin/env bash
# bench/device_call.sh with an engine that always fails (/bin/false): every stage fails, each is
# logged with its exit status, the script still finishes (exit 0) and packs what it has.
set -u
script=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
LIMIT=400 OUT="$dir/out" PACK="$dir/out.tar.xz" "$script" /bin/false "other=/bin/false" > "$dir/stderr" 2>&1
status=$?
fail() { echo "device_call_continues: $1"; cat "$dir/stderr"; exit 1; }
[ "$status" -eq 0 ] || fail "exit $status, want 0"
for want in "sweep: exit 1" "engine_vs_hf: exit 1" "ab: exit 1" "done"; do
  grep -q "$want" "$dir/out/log.txt" || fail "log.txt lacks '$want'"
done
tar -tJf "$dir/out.tar.xz" | grep -q "log.txt" || fail "the pack lacks log.txt"
echo "ok: every stage failed, was logged, and the pack was written"
