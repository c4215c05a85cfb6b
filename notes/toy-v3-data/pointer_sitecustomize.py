# Test harness only (not part of the project): point mi_catalog.toy.CHECKPOINT_DIR at $TOY_UNDER_TEST.
import os
from pathlib import Path

_target = os.environ.get("TOY_UNDER_TEST")
if _target:
    import mi_catalog.toy

    mi_catalog.toy.CHECKPOINT_DIR = Path(_target)
