#!/usr/bin/env python3
"""Whole-process `cairn run` of a 100×100 lattice of `run: 0` steps (start,
check, run, record in the run store), 2 at a time, against Dask's threaded
`get()` on the same graph with 2 workers (the graph built beforehand, the
call alone timed). Target: cairn at least 5× faster.

Needs `pip install dask` and hyperfine. Not run by CI.
"""
import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

import dask.threaded

root = pathlib.Path(__file__).resolve().parent.parent
subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
cairn = root / "target" / "release" / "cairn"


def deps(r, c):
    return ([f"n{r - 1}-{c}"] if r else []) + ([f"n{r}-{c - 1}"] if c else [])


def noop(*_):
    return None


with tempfile.TemporaryDirectory() as work:
    lines = ['plan lattice "100×100 lattice"', "  max_parallel: 2", ""]
    for r in range(100):
        for c in range(100):
            lines.append(f'task n{r}-{c} "n{r}-{c}"')
            if deps(r, c):
                lines.append("  needs: " + ", ".join(deps(r, c)))
            lines += ["  run: 0", ""]
    plan = pathlib.Path(work) / "lattice.plan"
    plan.write_text("\n".join(lines) + "\n")
    export = pathlib.Path(work) / "hyperfine.json"
    subprocess.run(
        ["hyperfine", "-N", "--warmup", "2", "--runs", "10",
         "--prepare", f"rm -rf {work}/.cairn",
         "--export-json", str(export), f"{cairn} run {plan}"],
        cwd=work, check=True, stdout=subprocess.DEVNULL,
    )
    cairn_ms = statistics.median(json.loads(export.read_text())["results"][0]["times"]) * 1000

graph = {f"n{r}-{c}": (noop, *deps(r, c)) for r in range(100) for c in range(100)}
runs = []
for _ in range(7):
    start = time.perf_counter()
    dask.threaded.get(graph, "n99-99", num_workers=2)
    runs.append(time.perf_counter() - start)
dask_ms = statistics.median(runs) * 1000
print(f"cairn run (whole process): {cairn_ms:.0f} ms")
print(f"dask threaded get():       {dask_ms:.0f} ms")
print(f"dask ÷ cairn:              {dask_ms / cairn_ms:.1f}×")
