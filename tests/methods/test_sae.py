"""The sparse autoencoder: it reconstructs better than the mean, keeps unit decoder rows, is deterministic for a
seed, survives a save/load round trip, refuses another model's weights, and its clamp keeps the error term; the
`mi-catalog sae` commands work through the installed entry point."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mi_catalog import sae as S  # noqa: E402
from mi_catalog.models.hooks import capture, edit_weights, hook_snapshot  # noqa: E402
from mi_catalog.models.loading import load_model  # noqa: E402
from mi_catalog.models.tiny import tiny_model  # noqa: E402

torch.set_num_threads(1)
SITE = "resid_post.1"


@pytest.fixture(scope="module")
def toy():  # type: ignore[no-untyped-def]
    return load_model("toy")


@pytest.fixture(scope="module")
def acts(toy):  # type: ignore[no-untyped-def]
    prompts, _ = S.mixture_prompts(toy, 48, seed=0)
    return S.collect_activations(toy, SITE, prompts)  # [tokens, 64]


def _config(toy, d_sae: int = 128, steps: int = 400, seed: int = 0) -> S.SAEConfig:  # type: ignore[no-untyped-def]
    return S.SAEConfig(model=toy.name, weights_sha256=S.weights_sha256(toy), site=SITE, d_model=toy.d_model,
                       d_sae=d_sae, steps=steps, seed=seed)  # fmt: skip


@pytest.fixture(scope="module")
def trained(toy, acts):  # type: ignore[no-untyped-def]
    return S.train_on(acts, _config(toy))


def test_reconstruction_beats_the_mean_baseline(toy, trained) -> None:  # type: ignore[no-untyped-def]
    m = trained.config.metrics
    assert m["mse"] < 0.3 * m["mse_mean_baseline"]
    assert m["explained_variance"] > 0.7
    assert 0 < m["l0"] < trained.d_sae / 4  # sparse
    # On prompts it never saw (another draw), too.
    prompts, _ = S.mixture_prompts(toy, 16, seed=5)
    fresh = S.collect_activations(toy, SITE, prompts)
    with torch.no_grad():
        residual = (fresh - trained(fresh)).pow(2).sum()
    assert float(residual) < 0.5 * float((fresh - fresh.mean(0)).pow(2).sum())


def test_decoder_rows_have_unit_norm(trained) -> None:  # type: ignore[no-untyped-def]
    norms = trained.W_dec.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert trained.W_dec.shape == (trained.d_sae, 64) and trained.W_enc.shape == (64, trained.d_sae)


def test_training_is_deterministic_for_a_seed(toy, acts) -> None:  # type: ignore[no-untyped-def]
    a = S.train_on(acts, _config(toy, d_sae=32, steps=30, seed=3)).tensors()
    b = S.train_on(acts, _config(toy, d_sae=32, steps=30, seed=3)).tensors()
    c = S.train_on(acts, _config(toy, d_sae=32, steps=30, seed=4)).tensors()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["W_dec"], c["W_dec"])


def test_save_load_round_trip(toy, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = S.save_sae(trained, tmp_path)
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])
    loaded = S.load_sae(path, toy)
    assert loaded.config == trained.config
    assert all(torch.equal(loaded.tensors()[k], v) for k, v in trained.tensors().items())
    assert json.loads(path.with_suffix(".json").read_text()) == json.loads(trained.config.to_json())
    x = torch.randn(5, 64)
    assert torch.equal(loaded.encode(x), trained.encode(x))
    assert [s.path for s in S.list_saes(tmp_path)] == [path]


def test_another_models_weights_are_refused(toy, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = S.save_sae(trained, tmp_path)
    with pytest.raises(S.SAEError) as err:
        S.load_sae(path, tiny_model("llama", seed=0))
    message = str(err.value)
    assert "\n" not in message and "trained on model 'toy'" in message and "mi-catalog sae train" in message
    # Same architecture, other weights: refused too.
    name = "model.layers.0.mlp.down_proj.weight"
    changed = dict(toy.model.named_parameters())[name].detach() + 0.01
    with edit_weights(toy, {name: changed}), pytest.raises(S.SAEError, match="weights sha256"):
        S.load_sae(path, toy)
    assert S.load_sae(path, toy).d_sae == trained.d_sae  # and accepted again once restored


def test_cache_lookup_matches_exact_weights_only(toy, trained, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MI_CATALOG_CACHE", str(tmp_path))
    assert S.find_cached(toy, SITE) is None
    path = S.save_sae(trained)
    assert path.parent == tmp_path / "saes" / "toy" / SITE
    assert S.find_cached(toy, SITE) == path
    assert S.find_cached(toy, "resid_post.2") is None
    name = "model.norm.weight"
    with edit_weights(toy, {name: dict(toy.model.named_parameters())[name].detach() * 2}):
        assert S.find_cached(toy, SITE) is None


def test_clamp_keeps_the_error_term_and_restores_the_model(toy, trained) -> None:  # type: ignore[no-untyped-def]
    batch = toy.encode(["cat sees dog = lema", "comment : you idiot , you are such a"])
    with torch.inference_mode(), capture(toy, [SITE]) as cache:
        clean = toy.logits(batch)
    f = trained.encode(cache[SITE])  # [b, pos, d_sae]
    silent = [i for i in range(trained.d_sae) if float(f[..., i].max()) == 0.0][:5]
    active = sorted(range(trained.d_sae), key=lambda i: -float(f[..., i].max()))[:3]
    hooks = hook_snapshot(toy.model)
    with torch.inference_mode():
        # Clamping features that are already 0 changes nothing: the SAE's error is kept, x is not replaced by x̂.
        with S.FeatureClamp(trained, tuple(silent), 0.0).apply(toy):
            assert torch.allclose(toy.logits(batch), clean, atol=1e-5)
        with S.FeatureClamp(trained, (), 3.0).apply(toy):
            assert torch.equal(toy.logits(batch), clean)
        with S.FeatureClamp(trained, tuple(active), 0.0).apply(toy), capture(toy, [SITE]) as steered:
            assert not torch.allclose(toy.logits(batch), clean, atol=1e-3)
        # The edit at the site is exactly (0 − f) W_dec / c for the clamped features.
        expected = cache[SITE] - f[..., active] @ trained.directions(active)
        real = batch.attention_mask.bool()
        assert torch.allclose(steered[SITE][real], expected[real], atol=1e-4)
        assert torch.equal(toy.logits(batch), clean)
    assert hook_snapshot(toy.model) == hooks


def test_bad_settings_are_one_line_errors(toy, acts) -> None:  # type: ignore[no-untyped-def]
    for kwargs, pattern in (({"where": "resid_post.9"}, "does not exist"), ({"where": "attn_pattern.1"}, "d_model"),
                            ({"where": "bogus.1"}, "unknown site")):  # fmt: skip
        with pytest.raises(S.SAEError, match=pattern) as err:
            S.train_sae(toy, steps=1, prompts_per_task=1, **kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(err.value)
    with pytest.raises(S.SAEError, match="d-sae"):
        S.train_on(acts, _config(toy, d_sae=0))


# --- the CLI through the installed entry point


def test_cli_train_and_list(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    env = {"MI_CATALOG_CACHE": str(tmp_path / "cache")}
    done = cli("sae", "train", "--steps", "20", "--prompts-per-task", "4", "--d-sae", "32", "--seed", "1", env=env)
    assert done.returncode == 0, done.stderr
    assert "explained variance" in done.stdout and "L0" in done.stdout
    saved = Path(done.stdout.strip().splitlines()[-1].removeprefix("saved: "))
    assert saved.is_file() and saved.parent == tmp_path / "cache" / "saes" / "toy" / SITE
    listed = cli("sae", "list", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    assert [s["path"] for s in payload["saes"]] == [str(saved)]
    config = payload["saes"][0]["config"]
    assert (config["model"], config["site"], config["d_sae"], config["steps"], config["seed"]) == (
        "toy",
        SITE,
        32,
        20,
        1,
    )
    assert len(config["weights_sha256"]) == 64 and 0 <= config["metrics"]["dead_fraction"] <= 1
    table = cli("sae", "list", env=env)
    assert table.returncode == 0 and "resid_post.1" in table.stdout and str(saved) in table.stdout


def test_cli_errors_are_one_line(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    env = {"MI_CATALOG_CACHE": str(tmp_path / "cache")}
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args, needle in ((("--steps", "0"), "--steps must be at least 1"),
                         (("--site", "resid_post.9", "--steps", "1", "--prompts-per-task", "1"), "layer 9 does not exist"),
                         (("--out", str(blocker), "--steps", "1", "--prompts-per-task", "1", "--d-sae", "8"), "cannot create")):  # fmt: skip
        done = cli("sae", "train", *args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mi-catalog: error:") and needle in lines[0], done.stderr
    empty = cli("sae", "list", env=env)
    assert empty.returncode == 0 and "no SAEs cached" in empty.stdout
