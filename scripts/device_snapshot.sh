#!/usr/bin/env bash
# Freezes what travels to the GPU machine at HEAD while helpers keep editing the working tree here:
# HEAD's version of every modified tracked file goes into carry/head_files.tar and the untracked,
# not-ignored files are listed in carry/untracked.txt. On the device, `scripts/device_snapshot.sh
# restore` puts HEAD's files back and removes the listed ones, so the build there is exactly HEAD's.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-save}" in
  save)
    mkdir -p carry
    changed=$(git diff --name-only HEAD)
    if [ -n "$changed" ]; then git archive -o carry/head_files.tar HEAD -- $changed; else tar -cf carry/head_files.tar --files-from /dev/null; fi
    git ls-files --others --exclude-standard > carry/untracked.txt
    ;;
  restore)
    tar -xf carry/head_files.tar
    while read -r f; do [ "$f" = scripts/device_snapshot.sh ] || rm -f "$f"; done < carry/untracked.txt
    ;;
esac
