"""Where the real model lives, captured when this module is first imported (at collection, from
tests/zoo/conftest.py) — before tests/conftest.py points MI_CATALOG_CACHE at a fresh folder for the session."""

from __future__ import annotations

from pathlib import Path

from mi_catalog.paths import cache_root

REAL_MODEL_NAME = "smollm2-135m"
REAL_MODEL_DIR: Path = cache_root() / "models" / REAL_MODEL_NAME
FETCH_HINT = f"{REAL_MODEL_NAME} is not fetched: run `mi-catalog models get {REAL_MODEL_NAME}` (or `make model`)"


def real_model_present() -> bool:
    return (REAL_MODEL_DIR / "model.safetensors").is_file() and (REAL_MODEL_DIR / "source.json").is_file()
