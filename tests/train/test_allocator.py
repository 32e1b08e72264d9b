"""Training keeps freed memory for reuse: large blocks freed and allocated again fault (almost) no new pages."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from masra.train.allocator import retain_freed_memory

ROUNDS = 10
# In a fresh interpreter: allocate, touch and free a 256-MiB tensor ROUNDS times; print the page faults.
FAULTS_OF_ROUNDS = f"""
import resource, sys
import torch
from masra.train.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({ROUNDS}):
    block = torch.ones(256 * 2**20, dtype=torch.uint8)  # torch's CPU allocator: malloc, 4-KiB pages
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 256 * 2**20 // 4096  # of one block


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", FAULTS_OF_ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's malloc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    assert _faults("default") >= (ROUNDS - 1) * PAGES  # glibc unmaps every block and maps the next one afresh
    # Reused: only the first block, and one more where a small allocation left next to a freed block keeps
    # the next (aligned, so slightly larger) request from fitting in its place.
    assert _faults("retain") <= 3 * PAGES


@pytest.mark.skipif(platform.libc_ver()[0] == "glibc", reason="this machine's C library is glibc")
def test_other_c_libraries_are_left_alone():
    assert retain_freed_memory() is False
