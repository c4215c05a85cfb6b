"""Our own Llama (mi_catalog.models.native) and tokenizer (mi_catalog.models.tokenizing) against transformers.

Parity, not plausibility: the same weights must give the same logits, the same activation at every site, the
same attention patterns, hidden states and loss as transformers' eager LlamaForCausalLM — on a random tiny Llama
with grouped-query attention and left padding, and on the shipped toy checkpoint (trained weights). The
tokenizer must give transformers' ids, masks, decodes and chat-template renderings. Loading a native folder must
not import transformers at all (that is what it is for), and a checkpoint it cannot run exactly is refused with
the reason — never approximated.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from support import save_tiny_folder  # noqa: E402

from mi_catalog.models import load_model  # noqa: E402
from mi_catalog.models.hooks import all_sites, capture  # noqa: E402
from mi_catalog.models.loading import LoadedModel, ModelLoadError, wrap_model  # noqa: E402
from mi_catalog.models.native import NativeLlamaForCausalLM, from_module, native_support  # noqa: E402
from mi_catalog.models.tiny import tiny_model  # noqa: E402
from mi_catalog.models.tokenizing import NativeTokenizer  # noqa: E402
from mi_catalog.toy import CHECKPOINT_DIR  # noqa: E402

PROMPTS = ["The Eiffel Tower is in the city of", "Big Ben is in", "apple river chair apple river", "Paris"]
SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n'"
    " }}{% endif %}"
)


def _pair() -> tuple[LoadedModel, LoadedModel]:
    hf = tiny_model("llama", seed=3)
    return hf, wrap_model(from_module(hf.model), hf.tokenizer, name="native")


def _assert_same_run(a: LoadedModel, b: LoadedModel, prompts: list[str]) -> None:
    """Same ids, logits and every site's activation (padding positions included)."""
    batch_a, batch_b = a.encode(prompts), b.encode(prompts)
    assert torch.equal(batch_a.input_ids, batch_b.input_ids)
    assert torch.equal(batch_a.attention_mask, batch_b.attention_mask)
    with capture(a) as cache_a:
        logits_a = a.logits(batch_a)
    with capture(b) as cache_b:
        logits_b = b.logits(batch_b)
    torch.testing.assert_close(logits_b, logits_a, rtol=0, atol=1e-5)
    assert set(cache_a.keys()) == set(cache_b.keys()) == {s.key for s in all_sites(a)}
    for key in sorted(cache_a.keys()):
        torch.testing.assert_close(cache_b[key], cache_a[key], rtol=0, atol=1e-5, msg=key)


def test_tiny_llama_matches_transformers_at_every_site() -> None:
    hf, native = _pair()
    assert isinstance(native.model, NativeLlamaForCausalLM) and native.backend == "native"
    assert native.family.name == hf.family.name == "llama" and native.n_kv_heads == 2 < native.n_heads
    assert {n: p.shape for n, p in native.model.named_parameters()} == {
        n: p.shape for n, p in hf.model.named_parameters()
    }
    _assert_same_run(hf, native, PROMPTS)  # left-padded batch, grouped-query attention


def test_tiny_llama_outputs_match_transformers() -> None:
    """hidden_states (embeddings … final-normed last block), attentions and the shifted LM loss."""
    hf, native = _pair()
    batch = hf.encode(PROMPTS)
    kwargs = {"output_hidden_states": True, "output_attentions": True, "labels": batch.input_ids}
    with torch.no_grad():
        out_hf, out_native = hf.forward(batch, **kwargs), native.forward(batch, **kwargs)
    assert len(out_native.hidden_states) == len(out_hf.hidden_states) == hf.n_layers + 1
    for mine, theirs in zip(out_native.hidden_states, out_hf.hidden_states, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5)
    for mine, theirs in zip(out_native.attentions, out_hf.attentions, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(out_native.loss, out_hf.loss, rtol=0, atol=1e-5)
    assert out_native["logits"] is out_native.logits


def test_unpadded_single_prompt_equals_its_row_in_a_padded_batch() -> None:
    _, native = _pair()
    batch = native.encode(PROMPTS)
    full = native.logits(batch)
    alone = native.logits(native.encode([PROMPTS[1]]))
    n = alone.shape[1]
    torch.testing.assert_close(full[1, -n:], alone[0], rtol=0, atol=1e-5)


def test_gradients_flow_like_transformers() -> None:
    hf, native = _pair()
    batch = hf.encode(PROMPTS[:2])
    grads = []
    for lm in (hf, native):
        lm.model.zero_grad(set_to_none=True)
        lm.forward(batch).logits[:, -1].logsumexp(-1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in lm.model.named_parameters()})
        lm.model.zero_grad(set_to_none=True)
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-5, msg=name)


def test_toy_checkpoint_is_the_same_model_natively() -> None:
    """Trained weights, the toy's word-level tokenizer read by NativeTokenizer, greedy generation."""
    native, hf = load_model("toy"), load_model("toy", backend="transformers")
    assert native.backend == "native" and hf.backend == "transformers"  # auto runs the toy natively
    assert isinstance(native.tokenizer, NativeTokenizer) and native.card == hf.card
    prompts = [ex.prompt for ex in hf.tasks.examples("induction", n=6, seed=0)]
    _assert_same_run(hf, native, prompts)
    assert native.generate(prompts[:3], 4) == hf.generate(prompts[:3], 4)


def test_toy_is_bit_identical_on_both_backends() -> None:
    """Why auto may run the toy natively although its card and every golden value were first measured through
    transformers: on every task (padded batches), logits, every site's activation and the gradients of a
    metric at the sites are *equal*, not merely close."""
    from mi_catalog.models.hooks import run_with_grads

    native, hf = load_model("toy", backend="native"), load_model("toy", backend="transformers")
    sites = [s.key for s in all_sites(hf) if s.name in ("resid_pre", "head_out", "mlp_act", "q", "v")]
    for task in hf.tasks.tasks():
        prompts = [ex.prompt for ex in hf.tasks.examples(task, n=8, seed=2)]
        batch = hf.encode(prompts)
        assert torch.equal(batch.input_ids, native.encode(prompts).input_ids)
        with capture(hf) as cache_hf:
            logits_hf = hf.logits(batch)
        with capture(native) as cache_native:
            logits_native = native.logits(batch)
        assert torch.equal(logits_native, logits_hf), task
        for key in sorted(cache_hf.keys()):
            assert torch.equal(cache_native[key], cache_hf[key]), (task, key)
        runs = [run_with_grads(lm, batch, sites, lambda logits: logits[:, -1].log_softmax(-1).max(-1).values.sum())
                for lm in (hf, native)]  # fmt: skip
        assert runs[0].value == runs[1].value, task
        for key in sites:
            assert torch.equal(runs[1].grads[key], runs[0].grads[key]), (task, key)


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer parity
# ---------------------------------------------------------------------------------------------------------------


def _tokenizer_pair(tmp_path: Path, template: str | None = None) -> tuple[object, NativeTokenizer]:
    hf = tiny_model("llama").tokenizer
    if template:
        hf.chat_template = template
    hf.save_pretrained(str(tmp_path))
    return hf, NativeTokenizer.from_folder(tmp_path)


@pytest.mark.parametrize("side", ["left", "right"])
def test_tokenizer_matches_transformers(tmp_path: Path, side: str) -> None:
    hf, mine = _tokenizer_pair(tmp_path)
    hf.padding_side = mine.padding_side = side  # type: ignore[attr-defined]
    for special in (True, False):
        theirs = hf(PROMPTS, padding=True, return_tensors="pt", add_special_tokens=special)  # type: ignore[operator]
        ours = mine(PROMPTS, padding=True, return_tensors="pt", add_special_tokens=special)
        assert torch.equal(ours["input_ids"], theirs["input_ids"]) and torch.equal(
            ours.attention_mask, theirs.attention_mask
        )
        assert (
            mine(PROMPTS[0], add_special_tokens=special)["input_ids"]
            == hf(PROMPTS[0], add_special_tokens=special)["input_ids"]
        )  # type: ignore[operator]
    ids = mine(PROMPTS[0])["input_ids"]
    for skip in (True, False):
        assert mine.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)  # type: ignore[attr-defined]
        assert mine.decode(torch.tensor(ids), skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)  # type: ignore[attr-defined]
    assert mine.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)  # type: ignore[attr-defined]
    for name in (
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "unk_token_id",
        "pad_token",
        "eos_token",
        "vocab_size",
    ):
        assert getattr(mine, name) == getattr(hf, name), name
    assert len(mine) == len(hf)  # type: ignore[arg-type]
    assert mine.unk_token_id in mine("zzzunknownword", add_special_tokens=False)["input_ids"]


def test_chat_template_renders_like_transformers(tmp_path: Path) -> None:
    hf, mine = _tokenizer_pair(tmp_path, SMOL_TEMPLATE)
    for messages in ([{"role": "user", "content": "Paris"}],
                     [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Big Ben is in"}]):  # fmt: skip
        for gen in (True, False):
            expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)  # type: ignore[attr-defined]
            assert mine.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen) == expected


def test_a_tokenizer_json_with_its_own_padding_is_padded_per_call_only() -> None:
    """The toy's tokenizer.json enables padding; like transformers we pad only when asked (and mask it)."""
    mine = NativeTokenizer.from_folder(CHECKPOINT_DIR)
    out = mine(["anna", "anna berg lives in"])["input_ids"]
    assert len(out[0]) < len(out[1])


# ---------------------------------------------------------------------------------------------------------------
# Loading: which backend, what it refuses, and that transformers is never imported
# ---------------------------------------------------------------------------------------------------------------


def test_auto_loads_a_plain_llama_folder_natively(tmp_path: Path) -> None:
    saved = save_tiny_folder(tmp_path)
    native = load_model(str(tmp_path))
    assert native.backend == "native" and isinstance(native.model, NativeLlamaForCausalLM)
    assert load_model(str(tmp_path), backend="transformers").backend == "transformers"
    _assert_same_run(saved, native, PROMPTS)


def test_native_backend_refuses_what_it_cannot_run_exactly(tmp_path: Path) -> None:
    save_tiny_folder(tmp_path, "qwen2")
    assert native_support(json.loads((tmp_path / "config.json").read_text())) is not None
    assert load_model(str(tmp_path)).backend == "transformers"  # auto: transformers runs it
    with pytest.raises(
        ModelLoadError, match=r"--backend native cannot run .*Qwen2ForCausalLM.*use --backend transformers"
    ):
        load_model(str(tmp_path), backend="native")
    base = {"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2}  # fmt: skip
    assert native_support(base) is None
    assert "RoPE scaling" in str(native_support({**base, "rope_parameters": {"rope_type": "llama3"}}))
    assert "attention_bias" in str(native_support({**base, "attention_bias": True}))
    assert "hidden_act" in str(native_support({**base, "hidden_act": "gelu"}))
    with pytest.raises(ModelLoadError, match="unknown backend"):
        load_model("toy", backend="jax")


def test_native_load_errors_are_one_line(tmp_path: Path) -> None:
    save_tiny_folder(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    with pytest.raises(ModelLoadError, match=r"no model\.safetensors .*safetensors only") as err:
        load_model(str(tmp_path))
    assert "\n" not in str(err.value)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "elsewhere.safetensors"))
    state["model.norm.weight"] = torch.ones(3)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"model.norm.weight has shape \(3,\)"):
        load_model(str(tmp_path))
    del state["model.norm.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"missing \['model.norm.weight'\]"):
        load_model(str(tmp_path))
    shutil.copy(tmp_path / "elsewhere.safetensors", tmp_path / "model.safetensors")
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"has no tokenizer\.json"):
        load_model(str(tmp_path))


def test_loading_a_native_folder_never_imports_transformers(tmp_path: Path) -> None:
    save_tiny_folder(tmp_path)
    code = (
        "import sys; from mi_catalog.models import load_model; from mi_catalog.models.hooks import capture; "
        f"lm = load_model({str(tmp_path)!r}); b = lm.encode(['Big Ben is in', 'Paris']); "
        "c = capture(lm); cache = c.__enter__(); lm.logits(b); c.__exit__(None, None, None); "
        "print(lm.backend, len(cache), lm.generate(['Paris'], 2) is not None, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    backend, n_sites, generated, imported = out.stdout.split()
    assert (backend, generated, imported) == ("native", "True", "False") and int(n_sites) > 10


def test_kv_cache_continuation_equals_transformers_and_the_full_forward() -> None:
    """A left-padded prefix cached, re-batched (repeat_interleave, select) and continued by one token gives the
    full forward's last logits, as transformers' DynamicCache does."""
    hf, native = _pair()
    batch = hf.encode(PROMPTS)
    ids, mask, pos = batch.input_ids, batch.attention_mask, batch.position_ids
    full = native.logits(batch)[:, -1]
    results = []
    for lm in (hf, native):
        with torch.no_grad():
            cache = lm.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                             use_cache=True).past_key_values  # fmt: skip
            cache.batch_repeat_interleave(2)
            cache.batch_select_indices(torch.arange(0, 2 * len(PROMPTS), 2))
            out = lm.model(input_ids=ids[:, -1:], attention_mask=mask, position_ids=pos[:, -1:],
                           past_key_values=cache, use_cache=True).logits[:, -1]  # fmt: skip
        results.append(out)
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(results[1], full, rtol=0, atol=1e-5)


def test_a_run_on_a_native_folder_imports_neither_transformers_nor_other_impls(tmp_path: Path) -> None:
    """What keeps `mi-catalog run logit-lens --model smollm2-135m` within seconds: no transformers, and only the
    implementation that runs (plus shared private helpers) is imported."""
    save_tiny_folder(tmp_path)
    code = (
        "import sys; from mi_catalog.methods.runner import run_impl; "
        f"r = run_impl('logit-lens', model={str(tmp_path)!r}, n=2); "
        "impls = sorted(m.split('.')[1] for m in sys.modules if m.startswith('reference_impls.') "
        "and not m.split('.')[1].startswith('_')); "
        "print(r.backend, 'transformers' in sys.modules, ','.join(impls))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["native", "False", "logit_lens"]
