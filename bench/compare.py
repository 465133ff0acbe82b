#!/usr/bin/env python3
"""cairn against Dask's threaded scheduler on the same DAGs (10,000 no-op
tasks: a chain, a 1→N→1 fan-out, a 100×100 lattice; 2 workers).

Needs `pip install dask`. Not run by CI. Prints µs per task and the ratio.
"""
import statistics
import subprocess
import time

import dask.threaded


def noop(*_):
    return None


def graphs():
    chain = {"t0": (noop,)}
    for i in range(1, 10_000):
        chain[f"t{i}"] = (noop, f"t{i - 1}")
    yield "chain", chain, "t9999"
    fan = {"start": (noop,)}
    for i in range(9_998):
        fan[f"t{i}"] = (noop, "start")
    fan["end"] = (noop, *[f"t{i}" for i in range(9_998)])
    yield "fan", fan, "end"
    lattice = {}
    for r in range(100):
        for c in range(100):
            deps = ([f"n{r - 1}-{c}"] if r else []) + ([f"n{r}-{c - 1}"] if c else [])
            lattice[f"n{r}-{c}"] = (noop, *deps)
    yield "lattice", lattice, "n99-99"


def dask_us(graph, key):
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        dask.threaded.get(graph, key, num_workers=2)
        runs.append((time.perf_counter() - start) * 1e6 / len(graph))
    return statistics.median(runs)


def cairn_us():
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "--example", "engine_timing"],
        check=True, capture_output=True, text=True,
    ).stdout
    return {(l.split()[0], l.split()[1]): float(l.split()[2]) for l in out.splitlines()}


def main():
    cairn = cairn_us()
    print(f"{'shape':8} {'dask µs/task':>13} {'cairn no-code':>14} {'ratio':>7} {'cairn run: ()':>14} {'ratio':>7}")
    for name, graph, key in graphs():
        d = dask_us(graph, key)
        a, b = cairn[("no_code", name)], cairn[("trivial_body", name)]
        print(f"{name:8} {d:13.1f} {a:14.2f} {d / a:6.0f}x {b:14.2f} {d / b:6.1f}x")


if __name__ == "__main__":
    main()
