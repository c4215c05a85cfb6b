"""The runner registry, id resolution, and `mi-catalog run` / `impls` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mi_catalog.impl_info import ImplDeclarationError, discover_impls
from mi_catalog.runner import UnknownImplError, registry, resolve, run_impl

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mi_catalog", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)  # fmt: skip


def test_registered_metadata_equals_ast_discovery() -> None:
    declared = discover_impls()
    assert {"logit-lens", "activation-patching"} <= set(declared)
    assert {impl_id: reg.info for impl_id, reg in registry().items()} == declared
    for info in declared.values():
        assert info.problems() == []


def test_entry_id_resolves_to_the_implementation_that_reproduces_it() -> None:
    info, entry = resolve("locating-and-editing-factual-associations-in-gpt")
    assert info.id == "activation-patching" and entry == "locating-and-editing-factual-associations-in-gpt"
    assert resolve("logit-lens")[1] is None
    with pytest.raises(UnknownImplError, match="did you mean 'logit-lens'"):
        resolve("logit-lense")


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    decl = 'IMPL = ImplInfo(id="same", title="t")\n'
    (tmp_path / "a.py").write_text(decl)
    (tmp_path / "b.py").write_text(decl)
    with pytest.raises(ImplDeclarationError, match="duplicate"):
        discover_impls(tmp_path)


def test_run_impl_returns_a_common_result(tmp_path: Path) -> None:
    from mi_catalog.models.tiny import tiny_model

    result = run_impl("interpreting-gpt-the-logit-lens", model=tiny_model("llama"), out_dir=tmp_path, n_prompts=2)
    payload = json.loads(result.to_json())
    assert payload["impl"] == "logit-lens" and payload["entry"] == "interpreting-gpt-the-logit-lens"
    assert payload["model"] == "tiny-llama"
    assert all(isinstance(v, float) for v in payload["metrics"].values())
    assert all(Path(f).is_file() and Path(f).parent == tmp_path for f in payload["figures"])
    assert (tmp_path / "logit-lens.json").is_file()
    with pytest.raises(TypeError, match="no field"):
        run_impl("logit-lens", model=tiny_model("llama"), not_a_field=1)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 saved as a local Hugging Face folder (safetensors), loadable with --model PATH."""
    from mi_catalog.models.tiny import tiny_model

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    lm = tiny_model("gpt2")
    lm.model.save_pretrained(folder, safe_serialization=True)
    lm.tokenizer.save_pretrained(folder)
    return folder


def test_cli_run_json_on_a_local_model_folder(saved_tiny: Path, tmp_path: Path) -> None:
    out = cli("run", "activation-patching", "--model", str(saved_tiny), "--format", "json", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert {"impl", "model", "metrics", "figures"} <= set(payload)
    assert payload["impl"] == "activation-patching" and payload["metrics"]["facts.n_prompts"] > 0
    assert all(Path(f).is_file() for f in payload["figures"])


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    out = cli("run", "logit-lns")
    assert out.returncode == 2 and "did you mean 'logit-lens'" in out.stderr and "Traceback" not in out.stderr
    out = cli("run", "logit-lens", "--model", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_cli_unsupported_model_is_a_clear_error(tmp_path: Path) -> None:
    import transformers as tf

    config = tf.OPTConfig(num_hidden_layers=1, hidden_size=16, ffn_dim=32, num_attention_heads=2, vocab_size=20,
                          word_embed_proj_dim=16, max_position_embeddings=32)  # fmt: skip
    config.architectures = ["OPTForCausalLM"]
    config.save_pretrained(tmp_path)  # the architecture is checked from the config, before any weights
    out = cli("run", "logit-lens", "--model", str(tmp_path))
    assert out.returncode == 2
    assert "model not supported" in out.stderr and "GPT2LMHeadModel" in out.stderr


def test_cli_impls_lists_the_implementations() -> None:
    out = cli("impls", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = {row["id"]: row for row in json.loads(out.stdout)}
    assert rows["activation-patching"]["objects"] == ["residual-stream", "attention-head", "ffn"]
    assert "logit-lens" in cli("impls").stdout


def test_cli_run_logit_lens_on_the_toy(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("run", "logit-lens", "--format", "json", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert {"impl", "model", "metrics", "figures"} <= set(payload)
    assert payload["model"] == "toy" and payload["figures"]


def test_cli_run_module_imports_light() -> None:
    code = "import sys, mi_catalog.cli_run; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
