#!/usr/bin/env bash
# Whole-process time of `cairn check` on a small plan (target: < 10 ms).
# Needs hyperfine (`apt-get install hyperfine`). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
hyperfine -N --warmup 20 --runs 200 'target/release/cairn check examples/debug-500.plan'
