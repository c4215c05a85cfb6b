from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mi_catalog.models.tiny import tiny_model  # noqa: E402

torch.set_num_threads(1)

# Sequential GPT-NeoX is covered by tests/models; here one model per family keeps the suite quick.
IMPL_FAMILIES = ("gpt2", "gpt-neox", "llama", "qwen2", "mistral")


@pytest.fixture(scope="module", params=IMPL_FAMILIES)
def tiny(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return tiny_model(request.param, seed=1)


def toy_available() -> bool:
    try:
        from mi_catalog.toy import CHECKPOINT_DIR
    except ImportError:
        return False
    return (CHECKPOINT_DIR / "model.safetensors").is_file()


@pytest.fixture(scope="session")
def toy():  # type: ignore[no-untyped-def]
    if not toy_available():
        pytest.skip("the toy checkpoint is not built yet")
    from mi_catalog.models import load_model

    return load_model("toy")
