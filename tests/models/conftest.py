from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mi_catalog.models.tiny import TINY_FAMILIES, tiny_model  # noqa: E402

torch.set_num_threads(1)

PROMPTS = ["The Eiffel Tower is in the city of", "Big Ben is in", "apple river chair apple river"]


def _toy_built() -> bool:
    try:
        from mi_catalog.toy import CHECKPOINT_DIR
    except ImportError:
        return False
    return (CHECKPOINT_DIR / "model.safetensors").is_file()


# Every tiny family, plus the trained toy model (a real Llama checkpoint) once it is built.
MODELS = (*TINY_FAMILIES, *(("toy",) if _toy_built() else ()))


@pytest.fixture(scope="module", params=MODELS)
def lm(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "toy":
        from mi_catalog.models import load_model

        return load_model("toy")
    return tiny_model(request.param, seed=0)


@pytest.fixture(scope="module")
def batch(lm):  # type: ignore[no-untyped-def]
    return lm.encode(PROMPTS)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return PROMPTS
