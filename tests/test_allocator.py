"""elbokit.allocator: glibc keeps freed memory when asked, and nothing breaks elsewhere."""

from __future__ import annotations

import platform
import subprocess
import sys

from elbokit.allocator import keep_freed_memory


def test_keep_freed_memory_takes_where_the_c_library_is_glibc():
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


def test_large_tensors_are_freed_and_reused_after_it():
    """In a fresh process (the setting is process-wide): after keep_freed_memory, allocating
    and freeing a 64 MiB tensor many times leaves the numbers right (the heap reuses it)."""
    code = (
        "import torch\n"
        "from elbokit.allocator import keep_freed_memory\n"
        "keep_freed_memory()\n"
        "x = torch.arange(16 * 2**20, dtype=torch.float32)\n"
        "total = sum(float((x * 2).sum()) for _ in range(20))\n"
        "assert total == 20 * float((x * 2).sum()), total\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
