#!/usr/bin/env python3
"""Writes the plan `cargo bench --bench check` checks (benches/check.rs,
`generate`), with N tasks, to stdout: for measuring a whole `cairn check`.
With --small, each task is only a header and one `needs:` (the smallest
tasks a plan can have)."""
import sys

args = [a for a in sys.argv[1:] if a != "--small"]
tasks = int(args[0]) if args else 100_000
if "--small" in sys.argv[1:]:
    out = ["plan generated \"Generated plan\"\n\n"]
    for i in range(tasks):
        out.append(f"task t{i} \"Step number {i}\"\n")
        if i > 0:
            out.append(f"  needs: t{i - 1}\n")
        out.append("\n")
    sys.stdout.write("".join(out))
    sys.exit(0)
bodies = [
    "  input:\n    rounds: 3\n    label: \"load test\"\n"
    "  run: |\n    let total = 0;\n    for i in 0..input.rounds * params.scale {\n"
    "      total += i;\n      if total > 1000 { break; }\n    }\n"
    "    log(`finished ${input.label} with ${total}`);\n    #{ total: total, rounds: input.rounds }\n"
    "  expect:\n    - result.total >= 0\n    - result.rounds == 3\n",
    "  run: |\n    let out = sh(\"cargo test --workspace --quiet\");\n"
    "    let failed = out.stdout.contains(\"FAILED\");\n    #{ failed: failed, log: out.stdout }\n"
    "  expect: !result.failed\n",
    "  input:\n    level: 2\n  run: input.level * 2\n  expect: result > 0\n"
    "  description: Doubles the level so the next stage has headroom.\n",
    "  run: |\n    // Record which attempt this is, for the summary.\n"
    "    log(\"step \" + task.id + \" attempt \" + task.attempt);\n    task.attempt\n"
    "  owner: platform-team\n",
]
out = ["plan generated \"Generated plan\"\n  param scale = 3\n  max_parallel: 8\n  allow: sh\n  budget: time 2h\n\n"]
for i in range(tasks):
    using = " using:sh" if i % 4 == 1 else ""
    out.append(f"task t{i} \"Step number {i}\" kind:build{using}\n")
    if i > 0:
        a = i - 1 - (i * 7919) % min(i, 50)
        b = i - 1
        out.append(f"  needs: t{a}\n" if a == b else f"  needs: t{a}, t{b}\n")
    out.append(bodies[i % 4])
    if i % 3 == 0:
        out.append("  retry: 2 backoff 1s factor 2 max 10s\n  timeout: 30s\n")
    out.append("\n")
sys.stdout.write("".join(out))
