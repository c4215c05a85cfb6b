"""One progress display for every long command (``run``, ``pipeline``, ``bench``, ``sae train``).

Library code reports progress through a plain callback ``(what, done, total)`` (see
:data:`mi_catalog.methods.data.Progress`); the CLI passes a :class:`ProgressBar`, which draws it on one
stderr line. Pure Python.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class ProgressBar:
    """``[#####.....] 12/40 what`` on one line, redrawn at most every 0.2 s (and whenever the stage named by
    ``what`` changes, so a new stage shows at once); silent when disabled (quiet, or stderr not a terminal)."""

    def __init__(self, enabled: bool, stream: Any = None, width: int = 24) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.last = 0.0
        self.what = ""

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = done >= total
        if not finished and what == self.what and now - self.last < 0.2:
            return
        self.last, self.what = now, what
        filled = int(self.width * done / total) if total else self.width
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {what}"
        self.stream.write("\r" + line[:110].ljust(110) + ("\n" if finished else ""))
        self.stream.flush()
