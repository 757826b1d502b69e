"""rl.allocator: with glibc's malloc thresholds raised, memory freed in a thread's arena is
reused instead of being faulted in again from the OS (counted by the kernel, not timed).

The pattern is the pixel update's: blocks of a few MB allocated and freed by a worker
thread. The pixel update itself is too erratic for a test (with glibc's defaults 3 to 55k
faults in six updates at batch 16, from run to run); bench/update_speed.py prints its
faults per update.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import resource, sys, threading
import numpy as np
from rl.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()

def work():  # 5 x 8 MB allocated and freed, three times, in this thread's arena
    for _ in range(3):
        blocks = [np.ones(1_000_000) for _ in range(5)]
        del blocks

def in_a_thread():
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()

in_a_thread()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    in_a_thread()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def python(script: str, *args: str) -> str:
    """stdout of ``script`` in a fresh interpreter (the allocator settings are per process)."""
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return out.stdout


def page_faults(mode: str) -> int:
    return int(python(SCRIPT, mode).split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt only")
def test_memory_freed_in_a_thread_is_reused_not_faulted_in_again():
    default, tuned = page_faults("default"), page_faults("tuned")
    # 3 threads x 3 rounds x 40 MB: measured 23.2k faults with glibc's defaults, ~940 tuned
    # on a quiet machine, 2.6k-3.6k tuned while other jobs kept both cores busy (the bound
    # was default / 10 and failed then); a quarter still says the memory is reused.
    assert default > 10_000, default
    assert tuned < default / 4, (default, tuned)


def test_keep_freed_memory_says_whether_it_took_effect():
    script = ("from rl.allocator import keep_freed_memory as k; a = k(); b = k(); "
              "assert a == b; print(a)")
    assert python(script).strip() == str(platform.libc_ver()[0] == "glibc"
                                     and sys.platform.startswith("linux"))
