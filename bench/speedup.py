"""Our update against the released re-enactment, alternated in fresh processes.

    python bench/speedup.py --repeats 5 -- --encoder_type pixel --batch_size 128 --steps 8

Runs ``bench/update_speed.py ARGS`` and ``bench/update_speed.py ARGS --released`` one after
the other, ``--repeats`` rounds (the order reversed every other round, so that a slow spell
of a shared machine hits both alike), and prints every figure, the medians and their
ratio. Timings on the shared 2-core machine vary by up to +-25% from one process to the
next; a single pair of runs proves little. Each side runs as it would in practice (see
``update_speed.py --allocator``): the allocator of each row is printed with it. Extra
``--variant "FLAGS"`` (repeatable) adds our update with those flags to each round, e.g. ``--variant=--shared_window --variant="--allocator glibc"`` (with
``=``: the value starts with a dash).
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "update_speed.py"


def time_once(args: list[str]) -> tuple[float, str, str]:
    proc = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True)
    found = re.search(r"^ms_per_update=([0-9.]+)", proc.stdout, re.M)  # wall clock, not cpu_ms
    if proc.returncode != 0 or not found:
        raise SystemExit(f"update_speed.py {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    faults = re.search(r"minor_page_faults_per_update=(\d+)", proc.stdout)
    allocator = re.search(r"allocator=(\w+)", proc.stdout)
    return (float(found.group(1)), faults.group(1) if faults else "?",
            allocator.group(1) if allocator else "?")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--variant", action="append", default=[], help="more flags for an extra row")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then update_speed.py flags")
    a = p.parse_args()
    if a.repeats < 1:
        p.error("--repeats must be >= 1")
    args = [x for x in a.bench_args if x != "--"]
    flags = {"ours": [], "released": ["--released"], **{f"ours {v}": v.split() for v in a.variant}}
    rows = {name: [] for name in flags}
    allocators = {}
    for i in range(a.repeats):
        for name in (list(rows) if i % 2 == 0 else list(rows)[::-1]):
            ms, faults, allocators[name] = time_once(args + flags[name])
            rows[name].append(ms)
            print(f"round {i + 1}: {name}: {ms:.1f} ms/update ({faults} minor page faults/update, "
                  f"allocator {allocators[name]})", flush=True)
    released = statistics.median(rows["released"])
    print(f"\nupdate_speed.py {' '.join(args)}")
    for name, values in rows.items():
        median = statistics.median(values)
        print(f"{name:>24}: median {median:8.1f} ms  (min {min(values):.1f}, max {max(values):.1f}, "
              f"n={len(values)}, allocator {allocators[name]})  speed-up vs released "
              f"{released / median:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
