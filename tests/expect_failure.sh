#!/usr/bin/env bash
# Runs a command that must fail: non-zero exit and an error message matching a pattern.
# usage: expect_failure.sh PATTERN COMMAND [ARGS...]
pattern=$1
shift
output=$("$@" 2>&1)
status=$?
if [ "$status" -eq 0 ]; then
  echo "expected a non-zero exit, got 0; output:"; echo "$output"; exit 1
fi
if ! grep -qE -- "$pattern" <<<"$output"; then
  echo "exit $status, but the message does not match /$pattern/:"; echo "$output"; exit 1
fi
echo "ok: exit $status: $output"
