"""Fixtures for the model zoo and the English sets (the real model's folder is captured in zoo_fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest
from zoo_fixtures import FETCH_HINT, REAL_MODEL_DIR, real_model_present


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    if not real_model_present():
        pytest.skip(FETCH_HINT)
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return REAL_MODEL_DIR
