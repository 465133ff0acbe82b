#!/usr/bin/env bash
# 1,000 steps each running `true`, cairn against `ninja -j2` on the same
# graph (independent steps). Target: cairn within 1.15× of ninja's wall time.
# Needs ninja and hyperfine (`apt-get install ninja-build hyperfine`). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo 'rule t'
  echo '  command = true'
  for i in $(seq 0 999); do echo "build out$i: t"; done
} > "$work/build.ninja"
{
  echo 'plan shell "1,000 true"'
  echo '  allow: sh'
  echo '  max_parallel: 2'
  for i in $(seq 0 999); do
    printf '\ntask t%d "true" using:sh\n  run: sh("true").code\n' "$i"
  done
} > "$work/shell.plan"
hyperfine -N --warmup 2 --runs 10 \
  "ninja -j2 -C $work -f build.ninja" \
  "$PWD/target/release/cairn run $work/shell.plan"
