"""Keep freed host memory for reuse instead of handing it back to the OS after every XLA:CPU call.

XLA:CPU allocates a program's temporary buffers with ``malloc`` on every call and frees them at the end. With
glibc's default settings the freed memory at the top of the heap is returned to the OS (trimmed) and
allocations above the dynamic mmap threshold are fresh mappings, so the next call touches new pages and the
kernel zeroes each of them: on the 2-core benchmark machine a GRPO update of the default size took ~14,000 minor
page faults and ~24 ms of system time (of 62 ms; 53 ms and no faults with this setting).

:func:`install` sets three glibc ``mallopt`` parameters, once, at import:

* ``M_TOP_PAD`` = 64 MiB: grow the heap in 64 MiB steps and leave that much untrimmed;
* ``M_MMAP_THRESHOLD`` = 256 MiB: buffers below it come from the heap (and are reused), not from fresh mappings;
* ``M_TRIM_THRESHOLD`` = 1 GiB: return the top of the heap to the OS only when more than that is free there.

The process then keeps (up to) its peak heap resident instead of giving pages back between calls, which is
what a training process wants; the numbers it computes are unchanged. Measured effect and peak memory:
``benchmarks/results/grpo_profile.md``, ``docs/decisions.md``.

It does nothing when the C library is not glibc, when any ``MALLOC_*`` variable or a ``glibc.malloc`` tunable in
``GLIBC_TUNABLES`` is set (the user tuned glibc's allocator themselves), or with ``JAXRL_SELF_NO_MALLOC_TUNING=1``.
"""
from __future__ import annotations

import ctypes
import os
import sys

OPT_OUT = "JAXRL_SELF_NO_MALLOC_TUNING"
# glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = ((M_TOP_PAD, 64 << 20), (M_MMAP_THRESHOLD, 256 << 20), (M_TRIM_THRESHOLD, 1 << 30))
#: glibc releases that cap M_MMAP_THRESHOLD lower (mallopt(3) documents 32 MiB on 64-bit) get this instead
MMAP_FALLBACK = 32 << 20


def _user_tuned() -> bool:
    """The user set glibc's allocator up themselves: a ``MALLOC_*`` variable or a ``glibc.malloc`` tunable."""
    return (any(name.startswith("MALLOC_") for name in os.environ)
            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""))


def install() -> bool:
    """Apply :data:`SETTINGS` with ``mallopt`` (see the module docstring). Returns True when they are set."""
    if os.environ.get(OPT_OUT, "") not in ("", "0") or not sys.platform.startswith("linux") or _user_tuned():
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only (musl has no mallopt parameters to tune)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = True
    for param, value in SETTINGS:  # every one is tried: a refused value must not leave the others unset
        done = mallopt(param, value) == 1
        if not done and param == M_MMAP_THRESHOLD:
            done = mallopt(param, MMAP_FALLBACK) == 1
        ok = ok and done
    return ok
