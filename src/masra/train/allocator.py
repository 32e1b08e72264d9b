"""Training keeps freed memory for reuse instead of handing it back to the kernel (glibc's malloc).

By default glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with fresh
pages from the kernel and unmaps them on free, and trims the top of its heap once 128 KiB or more are free
there. A training step on long videos allocates and frees tensors of tens to hundreds of MiB many times
(attention in checkpointed query chunks, layers recomputed in backward, their gradients), so every step the
kernel maps new pages and zeroes each on its first touch: a large share of the step is spent in page faults
(system time). With mmap and trimming off, freed blocks stay on malloc's free lists and the next allocations
reuse them: the process keeps the resident size it reached (its peak, which the first step reaches anyway) and
later steps fault almost no page. Other C libraries (and other systems) are left as they are.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int): free memory at the heap's top stays


def retain_freed_memory() -> bool:
    """Make this process's malloc keep freed memory for reuse (no mmap for large blocks, no heap trimming).
    True when set; False where the C library is not glibc. Process-wide; forked workers inherit it."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
