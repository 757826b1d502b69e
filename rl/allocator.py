"""Keep freed host memory for reuse instead of handing it back to the OS (glibc only).

A pixel update at batch 128 allocates and frees about 0.4 GB of short-lived host tensors
(conv feature maps of 27 MB, float copies of uint8 images, their gradients). glibc serves
blocks that large with ``mmap`` and returns them with ``munmap`` (or trims the heap top), so
every update faults the same memory back in, page by page, and the kernel zeroes it:
measured on the 2-core CPU machine, ~100k minor page faults and ~0.28 s of system time per
pixel update (see bench/RESULTS.md). Raising the mmap threshold to glibc's cap (32 MiB on
64-bit) and the trim threshold to 1 GiB lets freed blocks be reused from the heap. The
price: the process keeps its peak heap (it reaches it on every update anyway).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds (see the module docstring); False where there is no
    glibc ``mallopt`` (macOS, musl), which changes nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
