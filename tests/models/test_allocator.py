"""Keeping freed memory in the process: captured activations are no longer page-faulted back in every forward.

Counted, not timed: minor page faults (``getrusage``) over captured forward passes of the toy, in a fresh
process each (the allocator setting is process-wide and cannot be undone).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")

SCRIPT = """
import resource, sys, torch
from mi_catalog.models.allocator import keep_freed_memory
kept = keep_freed_memory() and keep_freed_memory() if sys.argv[1] == "keep" else False  # idempotent
from mi_catalog.models import all_sites, capture, load_model
torch.set_num_threads(1)
lm = load_model("toy")
batch = lm.encode([" ".join(["the the a and is was"] * 3)] * 16)
sites = all_sites(lm)
for _ in range(5):
    with capture(lm, sites):
        lm.logits(batch)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    with capture(lm, sites) as cache:
        lm.logits(batch)
    assert len(cache) == len(sites)
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 30)
"""


def _faults_per_forward(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True).stdout
    kept, faults = out.split()
    return kept == "True", float(faults)


def test_kept_freed_memory_stops_the_page_faults_of_capturing_every_site() -> None:
    kept, with_setting = _faults_per_forward("keep")
    _, default = _faults_per_forward("default")
    assert kept
    # Measured: ~1,460 faults per captured forward with glibc's defaults, ~9 with the setting.
    assert with_setting < 100 < default, (with_setting, default)
