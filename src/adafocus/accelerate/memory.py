"""``keep_freed_memory``: glibc keeps freed memory instead of unmapping it (Linux, once per process).

glibc hands every block above its mmap threshold (<= 32 MB) back to the OS on free, so a CNN with
big activations page-faults on all of them at every call. jemalloc / tcmalloc, or
``MALLOC_MMAP_MAX_=0`` in the environment, do the same job without code.
"""

from __future__ import annotations


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in its heap rather than unmapping it (see module doc).

    Affects the whole process from now on (its memory then stays at its peak). Returns True if it
    took effect (Linux with glibc), False elsewhere.
    """
    import ctypes
    import ctypes.util
    import sys

    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc
        return False
