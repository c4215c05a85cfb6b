"""Keep freed CPU memory inside the process instead of handing it back to the kernel after every forward pass.

Why: glibc's ``malloc`` returns the top of its heap to the kernel whenever more than ``M_TRIM_THRESHOLD`` bytes
are free there (a threshold glibc adjusts itself, from 128 KiB up). A forward pass that *keeps* its
activations — :func:`~mi_catalog.models.hooks.capture` at every site — frees them all together when the cache
is dropped; glibc trims the heap, and the next forward pass page-faults the same memory back in, zero-filled by
the kernel. On the toy model that is most of what capturing costs: 150 captured forward passes took 219,291
minor page faults (a bare forward pass: ~40) and 1.4–1.8× the time of a bare pass; with the trim threshold
raised, 1,322 faults. PyTorch's CPU performance guide gives the same remedy as an ``LD_PRELOAD`` of jemalloc or
tcmalloc; this does it in-process, with ``mallopt``.

It changes the whole process, so the library never calls it on its own: the ``mi-catalog`` commands that run
models do (:func:`mi_catalog.models.prepare_cli_process`), and so may a script (``keep_freed_memory()``).
The cost: up to ``limit`` bytes of freed memory stay mapped to the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
DEFAULT_LIMIT = 512 * 1024 * 1024

_applied: int | None = None


def keep_freed_memory(limit: int = DEFAULT_LIMIT) -> bool:
    """Let up to ``limit`` bytes of freed heap stay in the process (glibc only) → whether it was applied.

    Idempotent; a no-op returning False on other C libraries (macOS, musl) and on Windows.
    """
    global _applied
    if _applied == limit:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_TRIM_THRESHOLD, limit) != 1:
        return False
    _applied = limit
    return True
