"""The bench's tracks: run methods × tasks × seeds on one model and turn each run into rows.

Every registered implementation is a candidate (discovered from ``reference_impls/``, so steerers that land later
are picked up without touching this file):

* **locate** — an implementation runs on a task when a ground-truth mechanism of that task has a unit kind among
  its declared objects (:mod:`.expectations`); its ranked findings are scored per seed (:mod:`.scoring`), next to a
  ``random`` baseline (a random ranking of the same units, seeded like the run) and the ``ground-truth`` reference;
* **steer** — every implementation with a non-empty ``IMPL.steering`` runs on each of its tasks the model has; its
  ``Output.improve`` / ``side_effects`` give success (in the direction the run declares,
  ``Improve.goal``), accuracy loss, KL and the combined score, its strength-sweep
  curves (figures named ``*sweep*`` or ``*strength*``) the sweep rows;
* **cost** — wall time and forward/backward passes of every run, counted on the model (:mod:`.cost`).

Each (implementation, task) runs once per seed through :func:`mi_catalog.methods.runner.run_impl` — seed ``s``
draws the prompts and seeds the method — and one run feeds all three tracks. Every number is the mean over seeds
with a 95 % bootstrap interval (:func:`mi_catalog.methods.metrics.mean_ci`). Same seeds → the same rows, bit for
bit, apart from the wall times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mi_catalog.bench import scoring
from mi_catalog.bench.cost import count_passes
from mi_catalog.bench.expectations import Expectations, Mechanism, Truth, has_planted_truth
from mi_catalog.bench.rows import ROW_KEYS, TRACKS, number
from mi_catalog.errors import UsageError
from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Curve, Output
from mi_catalog.methods.data import Progress, no_progress
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.loading import LoadedModel

FULL_SEEDS = 10
QUICK_SEEDS = 2
# A full run gives cheap locators FULL_SEEDS seeds, steerers (which fit, edit or train) FULL_STEER_SEEDS, and the
# slowest methods fewer (measured per run on the toy) — the whole bench in ≤ 10 min on 2 cores.
FULL_STEER_SEEDS = 5
FULL_MAX_SEEDS = {
    "activation-patching": 3,
    "edge-attribution-patching": 3,
    "tuned-lens": 3,
    "sae-feature-steering": 3,  # ~5 s a run (trains its SAE when none is cached)
    "shortgpt": 3,
    "localized-finetuning": 3,
    "rome": 3,
    "function-vectors": 3,
}
# Bench settings per implementation (keyword overrides of its Spec; "n" = prompts). Everything else: defaults.
FULL_SETTINGS: dict[str, dict[str, Any]] = {
    "tuned-lens": {"steps": 100},
    "activation-patching": {"noise_samples": 4},
    # A wall-clock speed-up is not bit-reproducible; the compute-proportional one is (and times are in cost rows).
    "shortgpt": {"timing": False},
}
QUICK_SETTINGS: dict[str, dict[str, Any]] = {
    "attribution-patching": {"n": 8},
    "ffn-vocab-projection": {"n": 16},
    "linear-probe": {"n": 32, "steps": 50, "n_boot": 100},
    "logit-lens": {"n": 8},
    "massive-activations": {"n": 8},
    "language-neurons": {"n": 64},
    "refusal-direction": {"n": 64},
    "caa": {"n": 32},
}
# --quick: a subset that runs in well under a minute on 2 cores (and in the test suite).
QUICK_METHODS = tuple(QUICK_SETTINGS)
QUICK_TASKS = ("induction", "refusal", "language")
QUICK_MECHANISMS = (
    "induction-heads",
    "previous-token-heads",
    "refusal-heads",
    "refusal-layers",
    "language-heads",
    "language-selective-neurons",
)
SWEEP_WORDS = ("sweep", "strength")


class BenchError(UsageError):
    """A bench that cannot run as asked (unknown method or task); one line, exit 2."""


@dataclass
class BenchPlan:
    model: str = "toy"
    methods: tuple[str, ...] | None = None  # None: every registered implementation (--quick: QUICK_METHODS)
    tasks: tuple[str, ...] | None = None  # None: every task of the model (--quick: QUICK_TASKS)
    seeds: int | None = None  # None: FULL_SEEDS (--quick: QUICK_SEEDS)
    quick: bool = False
    truth_prompts: int = 48  # prompts behind each ground truth (neurons: half)
    jobs: int = 1  # worker processes (each runs whole (method, task) jobs; same numbers as one process)
    n: int | None = None  # prompts per run for every method (None: the bench settings, else each method's default)

    @property
    def n_seeds(self) -> int:
        if self.seeds is not None:
            return self.seeds
        return QUICK_SEEDS if self.quick else FULL_SEEDS


@dataclass
class Job:
    impl: ImplInfo
    task: str
    seeds: list[int]
    mechanisms: list[Mechanism]
    steer: bool
    overrides: dict[str, Any]

    @property
    def family(self) -> str:
        return family(self.impl)


@dataclass
class BenchResult:
    meta: dict[str, Any]
    mechanisms: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "mechanisms": self.mechanisms, "rows": self.rows, "skipped": self.skipped}


def family(info: ImplInfo) -> str:
    """The survey vocabulary id a method is filed under: its first localizing method, else its first steering id."""
    return (info.methods or info.steering or ("unknown",))[0]


def steer_family(info: ImplInfo) -> str:
    return (info.steering or info.methods or ("unknown",))[0]


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------


def plan_jobs(
    plan: BenchPlan, impls: dict[str, ImplInfo], expect: Expectations, model_tasks: Sequence[str]
) -> list[Job]:
    """Which (implementation, task) pairs run, with which seeds, mechanisms and settings."""
    methods = _chosen_methods(plan, impls)
    tasks = _chosen_tasks(plan, model_tasks)
    mechanisms = expect.mechanisms(tasks)
    if plan.quick:
        mechanisms = [m for m in mechanisms if m.id in QUICK_MECHANISMS]
    settings = QUICK_SETTINGS if plan.quick else FULL_SETTINGS
    jobs: list[Job] = []
    for impl_id in methods:
        info = impls[impl_id]
        kinds = {scoring.OBJECT_KIND[o] for o in info.objects if o in scoring.OBJECT_KIND}
        steer_tasks = [t for t in info.tasks if t in tasks] if info.steering else []
        if plan.quick:
            steer_tasks = steer_tasks[:1]
        runnable = [t for t in info.tasks if t in tasks]
        # Without planted truth a locator asked for by name still runs once per seed on its first task: cost only.
        cost_only = runnable[:1] if plan.methods is not None and not has_planted_truth(expect.lm) else []
        for task in runnable:
            mechs = [m for m in mechanisms if m.task == task and m.kind in kinds and m.scores(impl_id)]
            steer = task in steer_tasks
            if not (mechs or steer or task in cost_only):
                continue
            n_seeds = plan.n_seeds if plan.quick or plan.seeds is not None else min(
                plan.n_seeds, FULL_MAX_SEEDS.get(impl_id, FULL_STEER_SEEDS if info.steering else plan.n_seeds))  # fmt: skip
            overrides = dict(settings.get(impl_id, {}))
            if plan.n is not None:
                overrides["n"] = plan.n
            jobs.append(Job(info, task, list(range(n_seeds)), mechs, steer, overrides))
    return jobs


def _chosen_methods(plan: BenchPlan, impls: dict[str, ImplInfo]) -> list[str]:
    if plan.methods is None:
        return [m for m in (QUICK_METHODS if plan.quick else sorted(impls)) if m in impls]
    unknown = [m for m in plan.methods if m not in impls]
    if unknown:
        raise BenchError(f"unknown method(s) {', '.join(repr(m) for m in unknown)}; known: {', '.join(sorted(impls))}")
    return list(dict.fromkeys(plan.methods))


def _chosen_tasks(plan: BenchPlan, model_tasks: Sequence[str]) -> list[str]:
    if plan.tasks is None:
        return [t for t in (QUICK_TASKS if plan.quick else model_tasks) if t in model_tasks]
    unknown = [t for t in plan.tasks if t not in model_tasks]
    if unknown:
        raise BenchError(
            f"model has no task(s) {', '.join(repr(t) for t in unknown)}; its tasks: {', '.join(model_tasks)}"
        )
    return list(dict.fromkeys(plan.tasks))


# ---------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------

Key = tuple[str, str, str, str, str, str, float | None]  # track, method, family, task, metric, mechanism, x


class _Samples:
    """Per-seed values by row key, and run times by (method, task)."""

    def __init__(self) -> None:
        self.values: dict[Key, list[float]] = {}
        self.seconds: dict[tuple[str, str], list[float]] = {}

    def add(self, track: str, method: str, fam: str, task: str, metric: str, value: float,
            mechanism: str = "", x: float | None = None) -> None:  # fmt: skip
        if value is None or not math.isfinite(float(value)):
            return
        self.values.setdefault((track, method, fam, task, metric, mechanism, x), []).append(float(value))

    def merge(self, values: dict[Key, list[float]], seconds: dict[tuple[str, str], list[float]]) -> None:
        for key, vals in values.items():
            self.values.setdefault(key, []).extend(vals)
        for pair, secs in seconds.items():
            self.seconds.setdefault(pair, []).extend(secs)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for (track, method, fam, task, metric, mechanism, x), values in self.values.items():
            mean, (lo, hi) = mean_ci(torch.tensor(values, dtype=torch.float64), seed=0)
            times = self.seconds.get((method, task), [])
            out.append({
                "track": track, "method": method, "family": fam, "task": task, "metric": metric,
                "value": number(mean), "interval": [number(lo), number(hi)],
                "seconds": number(sum(times) / len(times)) if times else 0.0,
                "n_seeds": len(values), "mechanism": mechanism or None, "x": number(x),
            })  # fmt: skip
        out.sort(key=_row_order)
        assert all(tuple(r) == ROW_KEYS for r in out)
        return out


def _row_order(row: dict[str, Any]) -> tuple[int, str, str, str, str, float]:
    x = row["x"]
    return (TRACKS.index(row["track"]), row["method"], row["task"], row["mechanism"] or "", row["metric"],
            float(x) if x is not None else -math.inf)  # fmt: skip


def run_bench(
    plan: BenchPlan,
    lm: LoadedModel | None = None,
    progress: Progress = no_progress,
    impls: dict[str, ImplInfo] | None = None,
    runner: Callable[..., Any] | None = None,
) -> BenchResult:
    """Run the bench as planned → rows (and what was measured about the ground truth, and what was skipped)."""
    from mi_catalog.methods.runner import registry, run_impl
    from mi_catalog.models.loading import load_model

    started = time.perf_counter()
    impls = impls if impls is not None else {k: r.info for k, r in registry().items()}
    run = runner or run_impl
    _chosen_methods(plan, impls)  # unknown methods fail before the model loads
    lm = lm if lm is not None else load_model(plan.model)
    model_tasks = list(lm.tasks.tasks()) if lm.tasks is not None else []
    expect = Expectations(lm, n=plan.truth_prompts, n_neurons=max(8, plan.truth_prompts // (4 if plan.quick else 2)))
    jobs = plan_jobs(plan, impls, expect, model_tasks)
    needed = list(dict.fromkeys(m for job in jobs for m in job.mechanisms))
    total = len(needed) + sum(len(job.seeds) for job in jobs)
    done = 0
    samples = _Samples()
    truths: dict[str, Truth] = {}
    skipped: list[dict[str, str]] = []
    if plan.jobs > 1 and runner is None and len(jobs) > 1:
        for what, item in _parallel(plan, needed, jobs, expect):
            if isinstance(item, Truth):
                truths[item.mechanism.id] = expect._truth[item.mechanism.id] = item
                done += 1
            else:
                values, seconds, failed = item
                samples.merge(values, seconds)
                skipped.extend(failed)
                done += len(what.seeds)
            progress(
                f"{what.id if isinstance(what, Mechanism) else what.impl.id + ' on ' + what.task} done", done, total
            )
    else:
        for mech in needed:
            progress(f"ground truth {mech.id}", done, total)
            truths[mech.id] = expect.truth(mech)
            done += 1
        for job in jobs:

            def tick(what: str, job: Job = job) -> None:
                nonlocal done
                progress(what, done, total)
                done += 1

            _run_job(job, lm, expect, truths, run, samples, skipped, tick)
    _references(samples, expect, jobs, truths)
    progress("done", total, total)
    meta = {
        "model": lm.name,
        "quick": plan.quick,
        "seeds": plan.n_seeds,
        "methods": sorted({job.impl.id for job in jobs}),
        "tasks": sorted({job.task for job in jobs}),
        "planted_truth": has_planted_truth(lm),
        "command": command_line(plan),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    mechanisms = [truths[m.id].to_dict() for m in needed]
    return BenchResult(meta=meta, mechanisms=mechanisms, rows=samples.rows(), skipped=skipped)


def _run_job(job: Job, lm: LoadedModel, expect: Expectations, truths: dict[str, Truth], run: Callable[..., Any],
             samples: _Samples, skipped: list[dict[str, str]], tick: Callable[[str], None]) -> None:  # fmt: skip
    """Every seed of one (implementation, task): run it, count its passes, score it on each track."""
    for i, seed in enumerate(job.seeds):
        tick(f"{job.impl.id} on {job.task}, seed {seed}")
        try:
            with count_passes(lm) as passes:
                start, cpu = time.perf_counter(), time.process_time()
                result = run(job.impl.id, model=lm, task=job.task, seed=seed, **job.overrides)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        except Exception as err:  # a method that fails is reported, the bench goes on
            reason = str(err).splitlines()[0] if str(err) else ""
            skipped.append({"method": job.impl.id, "task": job.task, "seed": str(seed),
                            "reason": f"{type(err).__name__}: {reason}"})  # fmt: skip
            for rest in job.seeds[i + 1 :]:
                tick(f"{job.impl.id} on {job.task}, seed {rest} (skipped)")
            return
        samples.seconds.setdefault((job.impl.id, job.task), []).append(seconds)
        _cost(samples, job, seconds, cpu, passes.forward, passes.backward)
        for mech in job.mechanisms:
            if truths[mech.id].valid:
                _locate(samples, expect, job, truths[mech.id], result.output)
        if job.steer and result.output.improve is not None:
            _steer(samples, job, result.output)


# --- parallel: whole jobs on worker processes (each loads the model once; same numbers as serial) ---------------

_WORKER: dict[str, Any] = {}


def _init_worker(model: str, threads: int, n: int, n_neurons: int) -> None:
    from mi_catalog.models.allocator import keep_freed_memory
    from mi_catalog.models.loading import load_model

    keep_freed_memory()  # a spawned worker is a fresh process: the same allocator setting as its parent CLI
    torch.set_num_threads(threads)
    lm = load_model(model)
    _WORKER.update(lm=lm, expect=Expectations(lm, n=n, n_neurons=n_neurons))


def _truth_in_worker(mech: Mechanism) -> Truth:
    return _WORKER["expect"].truth(mech)  # type: ignore[no-any-return]


def _job_in_worker(
    job: Job, truths: dict[str, Truth]
) -> tuple[dict[Key, list[float]], dict[tuple[str, str], list[float]], list[dict[str, str]]]:
    from mi_catalog.methods.runner import run_impl

    expect: Expectations = _WORKER["expect"]
    expect._truth.update(truths)
    samples, skipped = _Samples(), []  # type: ignore[var-annotated]
    _run_job(job, _WORKER["lm"], expect, truths, run_impl, samples, skipped, lambda _what: None)
    return samples.values, samples.seconds, skipped


def _parallel(
    plan: BenchPlan, needed: list[Mechanism], jobs: list[Job], expect: Expectations
) -> Iterator[tuple[Any, Any]]:
    """Ground truths, then whole jobs, on ``plan.jobs`` spawned processes (each loads the model once); yields
    (mechanism, truth) in plan order, then (job, its samples) in plan order — the same numbers as one process."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    args = (plan.model, torch.get_num_threads(), expect.n, expect.n_neurons)
    with concurrent.futures.ProcessPoolExecutor(plan.jobs, mp_context=context, initializer=_init_worker,
                                                initargs=args) as pool:  # fmt: skip
        truth_futures = [pool.submit(_truth_in_worker, mech) for mech in needed]
        truths: dict[str, Truth] = {}
        for mech, future in zip(needed, truth_futures, strict=True):
            truths[mech.id] = future.result()
            yield mech, truths[mech.id]
        job_futures = [pool.submit(_job_in_worker, job, {m.id: truths[m.id] for m in job.mechanisms}) for job in jobs]
        for job, job_future in zip(jobs, job_futures, strict=True):
            yield job, job_future.result()


def command_line(plan: BenchPlan) -> str:
    parts = ["mi-catalog bench"]
    if plan.model != "toy":
        parts.append(f"--model {plan.model}")
    if plan.quick:
        parts.append("--quick")
    if plan.methods is not None:
        parts.append("--methods " + ",".join(plan.methods))
    if plan.tasks is not None:
        parts.append("--tasks " + ",".join(plan.tasks))
    if plan.seeds is not None:
        parts.append(f"--seeds {plan.seeds}")
    if plan.n is not None:
        parts.append(f"--n {plan.n}")
    return " ".join(parts)


def _cost(samples: _Samples, job: Job, seconds: float, cpu: float, forward: int, backward: int) -> None:
    fam = job.family
    samples.add("cost", job.impl.id, fam, job.task, "seconds", seconds)
    samples.add("cost", job.impl.id, fam, job.task, "cpu_seconds", cpu)
    samples.add("cost", job.impl.id, fam, job.task, "forward_passes", forward)
    samples.add("cost", job.impl.id, fam, job.task, "backward_passes", backward)


def _score(samples: _Samples, expect: Expectations, method: str, fam: str, truth: Truth,
           ranked: list[scoring.Unit]) -> None:  # fmt: skip
    mech = truth.mechanism
    k = len(truth.true)
    add = samples.add
    add("locate", method, fam, mech.task, "precision_at_k", scoring.precision_at_k(ranked, truth.true_set, k), mech.id)
    add(
        "locate",
        method,
        fam,
        mech.task,
        "true_rank",
        scoring.true_rank(ranked, truth.true_set, len(truth.universe)),
        mech.id,
    )
    add("locate", method, fam, mech.task, "auroc", scoring.auroc(ranked, truth.true_set, truth.universe), mech.id)
    add("locate", method, fam, mech.task, "faithfulness", expect.faithfulness(mech, ranked[:k]), mech.id)


def _locate(samples: _Samples, expect: Expectations, job: Job, truth: Truth, output: Output) -> None:
    ranked = scoring.ranking(output.findings, truth.mechanism.kind)
    if ranked:  # a method that names no unit of this kind on this task is not scored on it
        _score(samples, expect, job.impl.id, job.family, truth, ranked)


def _references(samples: _Samples, expect: Expectations, jobs: list[Job], truths: dict[str, Truth]) -> None:
    """The ``random`` baseline (one random ranking per seed) and the ``ground-truth`` reference, per mechanism."""
    seeds_by_mech: dict[str, int] = {}
    for job in jobs:
        for mech in job.mechanisms:
            seeds_by_mech[mech.id] = max(seeds_by_mech.get(mech.id, 0), len(job.seeds))
    for mech_id, n_seeds in seeds_by_mech.items():
        truth = truths[mech_id]
        if not truth.valid:
            continue
        task = truth.mechanism.task
        for seed in range(n_seeds):
            order = torch.randperm(len(truth.universe), generator=torch.Generator().manual_seed(seed)).tolist()
            _score(samples, expect, "random", "baseline", truth, [truth.universe[i] for i in order])
        samples.add("truth", "ground-truth", "reference", task, "faithfulness", truth.faithfulness, mech_id)
        samples.add("truth", "ground-truth", "reference", task, "n_true", len(truth.true), mech_id)
        samples.add("truth", "ground-truth", "reference", task, "n_units", len(truth.universe), mech_id)


def _steer(samples: _Samples, job: Job, output: Output) -> None:
    assert output.improve is not None
    fam, method, task = steer_family(job.impl), job.impl.id, job.task
    scores = scoring.steer_scores(output.improve, output.side_effects)
    for metric, value in (("success", scores.success), ("accuracy_loss", scores.accuracy_loss),
                          ("kl_neutral", scores.kl_neutral), ("combined", scores.combined),
                          ("improve_before", output.improve.before), ("improve_after", output.improve.after)):  # fmt: skip
        samples.add("steer", method, fam, task, metric, value)
    for effect in output.side_effects:
        if effect.is_task:
            samples.add("steer", method, fam, task, f"side_effect:{effect.name}", effect.after - effect.before)
    for fig in sweep_curves(output.figures):
        for series, values in fig.series.items():
            for x, value in zip(fig.x, values, strict=False):
                samples.add("steer", method, fam, task, f"sweep:{fig.name}:{series}", value, x=float(x))


def sweep_curves(figures: Iterable[Any]) -> list[Curve]:
    """A steerer's strength sweeps: its curves named like ``*sweep*`` or ``*strength*``."""
    return [f for f in figures if isinstance(f, Curve) and any(w in f.name.lower() for w in SWEEP_WORDS)]
