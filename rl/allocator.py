"""Keep freed host memory for reuse instead of handing it back to the OS (glibc only).

A pixel update at batch 128 allocates and frees about 0.4 GB of short-lived host tensors
(conv feature maps of 27 MB, float copies of uint8 images, their gradients), partly from
the torch worker threads. glibc gives each thread's arena its own heaps and shrinks them
on free, so with two torch threads the next update faults the same memory back in, page
by page, zeroed by the kernel: measured on the 2-core CPU machine, tens of thousands of
minor page faults and ~0.25 s of system time per pixel update (bench/RESULTS.md). Raising
the mmap threshold to glibc's cap (32 MiB on 64-bit) and the trim threshold to 1 GiB keeps
freed blocks in the heaps for reuse. Blocks above 32 MiB are still mapped and unmapped
each time.

The price: the settings hold for the rest of the process (a reused Ray worker keeps them
for its later runs; no effect on state-vector update speed was measured) and each arena
may keep up to 1 GiB of freed memory. With jemalloc or tcmalloc preloaded, glibc's
``mallopt`` still answers but changes nothing.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 1 << 30


def _mallopt():
    """glibc's ``mallopt`` (its soname is always libc.so.6), or None."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds (see the module docstring); True if both were taken,
    False where there is no glibc ``mallopt`` (macOS, musl) or it refused a value."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mmap_ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    trim_ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return mmap_ok and trim_ok


def wanted(device_type: str, pixels: bool) -> bool:
    """Whether a training run should call :func:`keep_freed_memory`: CPU pixel runs (where
    the page faults were measured; state-vector updates showed no effect)."""
    return device_type == "cpu" and pixels
