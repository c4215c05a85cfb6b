"""The runner registry, id resolution, and `mi-catalog run` / `impls` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import save_tiny_folder

from mi_catalog.impl_info import ImplDeclarationError, discover_impls
from mi_catalog.methods.runner import UnknownImplError, registry, resolve, run_impl

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

    result = run_impl("interpreting-gpt-the-logit-lens", model=tiny_model("llama"), out_dir=tmp_path, n=2)
    payload = json.loads(result.to_json())
    assert payload["impl"] == "logit-lens" and payload["entry"] == "interpreting-gpt-the-logit-lens"
    assert payload["model"] == "tiny-llama" and payload["task"] == "facts" and payload["kind"] == "reproduction"
    assert isinstance(payload["metrics"]["n_prompts"], int)  # integers stay integers
    assert isinstance(payload["metrics"]["answer_prob_final"], float)
    assert all(set(f) >= {"object", "layer", "index", "score"} for f in payload["findings"])
    assert all(Path(f).is_file() and Path(f).parent == tmp_path for f in payload["figures"])
    assert (tmp_path / "logit-lens.json").is_file()
    with pytest.raises(TypeError, match="no field"):
        run_impl("logit-lens", model=tiny_model("llama"), not_a_field=1)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 saved as a local Hugging Face folder (safetensors), loadable with --model PATH."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny_folder(folder, "gpt2")
    return folder


def test_cli_run_json_on_a_local_model_folder(saved_tiny: Path, tmp_path: Path) -> None:
    out = cli("run", "activation-patching", "--model", str(saved_tiny), "--format", "json", "--out", str(tmp_path),
              "--n", "2")  # fmt: skip
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert {"impl", "model", "backend", "task", "metrics", "intervals", "findings", "figures"} <= set(payload)
    assert payload["impl"] == "activation-patching" and payload["metrics"]["n_prompts"] == 2
    assert all(Path(f).is_file() for f in payload["figures"])
    assert payload["backend"] == "transformers"  # a GPT-2 folder: only transformers runs it
    refused = cli("run", "logit-lens", "--model", str(saved_tiny), "--n", "2", "--backend", "native")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "--backend native cannot run" in refused.stderr


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    out = cli("run", "logit-lns")
    assert out.returncode == 2 and "did you mean 'logit-lens'" in out.stderr and "Traceback" not in out.stderr
    out = cli("run", "logit-lens", "--model", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--device", "cuda"), "no CUDA"),
        (("--task", "nope"), "does not support task 'nope'"),
        (("--n", "0"), "--n must be at least 1"),
    ],
)
def test_cli_bad_run_options_are_one_line(args: tuple[str, ...], message: str) -> None:
    out = cli("run", "logit-lens", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_cli_bad_out_is_checked_before_the_model_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = cli("run", "activation-patching", "--out", str(blocker))
    assert out.returncode == 2 and "not a folder" in out.stderr and "Traceback" not in out.stderr


def test_cli_hub_id_without_network_fails_fast() -> None:
    import time

    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "mi_catalog", "run", "logit-lens", "--model", "nobody/no-such-model"],
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert out.returncode == 2 and "local folder" in out.stderr and "Traceback" not in out.stderr
    assert time.monotonic() - start < 30


def test_prompt_longer_than_the_context_is_one_line(tmp_path: Path) -> None:
    from mi_catalog.models.loading import ModelLoadError
    from mi_catalog.models.tiny import tiny_model

    lm = tiny_model("gpt2")  # 64 learned positions
    with pytest.raises(ModelLoadError, match="longer than"):
        lm.encode([" ".join(["apple"] * 100)])


def test_user_prompts_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "mine.jsonl"
    good.write_text('{"prompt": "anna berg lives in", "answer": "paris"}\n{"prompt": "boris costa plays", "answer": "golf"}\n')
    out = cli("run", "logit-lens", "--prompts", str(good), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["metrics"]["n_prompts"] == 2
    english = tmp_path / "english.jsonl"
    english.write_text('{"prompt": "The Eiffel Tower is in", "answer": " Paris"}\n')
    out = cli("run", "logit-lens", "--prompts", str(english))  # the toy is word-level: unknown words are an error
    assert out.returncode == 2 and "unknown to" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    out = cli("run", "logit-lens", "--prompts", str(bad))
    assert out.returncode == 2 and "bad.jsonl:1" in out.stderr and "answer" in out.stderr


def test_a_copied_toy_checkpoint_is_the_toy(tmp_path: Path) -> None:
    """The toy is recognised by its files, not its name: a copy runs on the toy's own task data."""
    import shutil

    from mi_catalog.toy import CHECKPOINT_DIR

    copy = tmp_path / "my-toy"
    shutil.copytree(CHECKPOINT_DIR, copy)
    a = json.loads(cli("run", "logit-lens", "--format", "json", "--model", str(copy)).stdout)
    b = json.loads(cli("run", "logit-lens", "--format", "json").stdout)
    for payload in (a, b):
        payload.pop("seconds"), payload.pop("model")
    assert a == b and a["data"] == "toy"


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
    assert {"id", "objects", "methods", "steering", "reproduces", "tasks"} <= set(rows["logit-lens"])
    assert "logit-lens" in cli("impls").stdout
    detail = cli("impls", "logit-lens").stdout
    assert "first_top1_layer" in detail and "First layer whose decoded residual" in detail


def test_cli_run_logit_lens_on_the_toy(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("run", "logit-lens", "--format", "json", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert {"impl", "model", "task", "findings", "metrics", "figures"} <= set(payload)
    assert payload["model"] == "toy" and payload["figures"] and payload["task"] == "facts"


def test_cli_run_module_imports_light() -> None:
    code = "import sys, mi_catalog.cli_run; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("memit", ["targeted-optimization: run localized-finetuning or rome", "mass-editing-memory-in-a-transformer"]),
        ("causal-tracing", ["causal-attribution: run ablation-importance or activation-patching",
                            "locating-and-editing-factual-associations-in-gpt (runs rome)"]),
        ("roam", ["did you mean 'rome'?"]),
    ],
)
def test_unknown_run_target_says_what_was_meant(name: str, expected: list[str]) -> None:
    with pytest.raises(UnknownImplError) as info:
        resolve(name)
    for text in expected:
        assert text in str(info.value)


def test_a_prompts_file_gives_the_same_examples_wherever_it_lives(tmp_path: Path) -> None:
    from mi_catalog.tasks import file_source

    rows = "".join(f'{{"prompt": "p{i}", "answer": "a{i}"}}\n' for i in range(20))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jsonl").write_text(rows)
    first = file_source(tmp_path / "a" / "x.jsonl").examples("custom", 5, seed=3)
    second = file_source(tmp_path / "b" / "x.jsonl").examples("custom", 5, seed=3)
    assert [e.prompt for e in first] == [e.prompt for e in second]


@pytest.mark.parametrize("argv", [["run", "logit-lens"], ["pipeline", "--object", "head", "--method", "probing"],
                                  ["bench", "--quick"], ["sae", "train"]])  # fmt: skip
def test_a_missing_run_extra_is_one_line_with_the_install_command(argv: list[str]) -> None:
    """Every command that runs models says how to install torch/transformers, in one line (exit 2)."""
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from mi_catalog.cli import main\n"
            f"raise SystemExit(main({argv!r}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "pip install 'mi-catalog[run]'" in out.stderr, out.stderr
