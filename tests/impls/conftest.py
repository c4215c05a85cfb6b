from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mi_catalog.models.tiny import tiny_model  # noqa: E402

torch.set_num_threads(1)

# Sequential GPT-NeoX is covered by tests/models; here one model per family keeps the suite quick.
IMPL_FAMILIES = ("gpt2", "gpt-neox", "llama", "llama-native", "qwen2", "mistral")

# A universal example set in the tiny models' vocabulary: every field any method may need (subject for noise,
# a same-token-length contrast prompt, a binary label). Word-level tokenizer: same word count = same length.
_GROUPS = (
    [("The Eiffel Tower is in the city of", "The Eiffel Tower", " Paris", "city"),
     ("The Space Needle is in the city of", "The Space Needle", " Seattle", "city"),
     ("The Brandenburg Gate is in the city of", "The Brandenburg Gate", " Berlin", "city")],
    [("The Colosseum is in the city of", "The Colosseum", " Rome", "city"),
     ("Big Ben is in the city of", "Big Ben", " London", "city")],
    [("Michael Jordan plays the sport of", "Michael Jordan", " basketball", "sport"),
     ("Lionel Messi plays the sport of", "Lionel Messi", " soccer", "sport"),
     ("Serena Williams plays the sport of", "Serena Williams", " tennis", "sport")],
    [("The capital of Japan is", "Japan", " Tokyo", "sport"), ("The capital of France is", "France", " Paris", "city")],
)  # fmt: skip


def universal_rows() -> list[dict[str, str]]:
    rows = []
    for group in _GROUPS:
        for i, (prompt, subject, answer, label) in enumerate(group):
            other = group[(i + 1) % len(group)]
            rows.append({"prompt": prompt, "answer": answer, "subject": subject, "label": label,
                         "corrupt_prompt": other[0], "corrupt_answer": other[2]})  # fmt: skip
    return rows


@pytest.fixture(scope="session")
def universal_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "universal.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in universal_rows()) + "\n", encoding="utf-8")
    return path


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
