"""Fixtures for the model zoo and the English sets.

The real-model tests need SmolLM2-135M in the user's real model cache, but tests/conftest.py points
MI_CATALOG_CACHE at a fresh folder for the session. Conftest files are imported at collection time,
before any fixture runs, so the real cache folder is captured here, first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mi_catalog.paths import cache_root

REAL_MODEL_NAME = "smollm2-135m"
REAL_MODEL_DIR: Path = cache_root() / "models" / REAL_MODEL_NAME
FETCH_HINT = f"{REAL_MODEL_NAME} is not fetched: run `mi-catalog models get {REAL_MODEL_NAME}` (or `make model`)"


def real_model_present() -> bool:
    return (REAL_MODEL_DIR / "model.safetensors").is_file() and (REAL_MODEL_DIR / "source.json").is_file()


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    if not real_model_present():
        pytest.skip(FETCH_HINT)
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return REAL_MODEL_DIR
