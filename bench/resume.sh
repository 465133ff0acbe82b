#!/usr/bin/env bash
# `cairn resume` of a run whose 100,000 steps all finished: the run stops at a
# final gate, and resume (approving it) keeps every recorded outcome.
# Target: under 0.3 s. Needs hyperfine. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/big.plan" <<'PY'
import sys
n = 100_000
lines = ['plan big "100,000 steps"', '  max_parallel: 4', '']
for i in range(n):
    lines.append(f'task t{i} "T{i}"')
    if i >= 4:
        lines.append(f'  needs: t{i - 4}')
    lines.append('')
lines += ['gate done "Done"', f'  needs: t{n - 1}']
open(sys.argv[1], 'w').write('\n'.join(lines) + '\n')
PY
cd "$work"
cairn="$OLDPWD/target/release/cairn"
"$cairn" run big.plan > /dev/null || test $? -eq 3
cp -r .cairn paused
# Each resume starts from a copy of the paused store, written out first
# (`sync`): otherwise the store's closing checkpoint, whose `fsync` flushes
# the whole file, would also write out the copy just made.
hyperfine --warmup 1 --runs 20 \
  --prepare "rm -rf .cairn && cp -r paused .cairn && sync" \
  "$cairn resume --approve done" \
  "$cairn check big.plan"
