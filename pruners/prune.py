"""One pruning run, end to end: load a trained network, search, cut, fine-tune, measure, write.

The run folder makes it resumable: the search's decision is written to ``search.json`` as soon as it
is found, and fine-tuning checkpoints every epoch under ``finetune/``; running the same command again
skips what is done. Everything a method does between (its oracle calls, its history) lands in the
report.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.folder_lock import FolderLock
from latbench.jsonio import dump_json
from pruners.batchnorm import RECALIBRATION_IMAGES
from pruners.data import load_dataset, loaders
from pruners.errors import PruningError
from pruners.finetune_job import Recipe, launch
from pruners.groups import channel_groups
from pruners.method import Method, Problem
from pruners.methods import get_method
from pruners.oracle import Anchor, LatencyOracle
from pruners.result import PruneResult
from pruners.surgery import Decision, apply
from pruners.train import TrainConfig, evaluate, fit, load_weights, read_weights, save_atomic
from pruners.trained import load_trained

SEARCH = "search.json"
SEARCH_WEIGHTS = "search.pt"


#: a user's fine-tuning step: train ``module`` in place for ``epochs`` epochs
FineTune = Callable[[nn.Module, int], None]
#: a user's evaluation: a score of ``module``, higher is better (top-1 accuracy in percent by default)
Evaluate = Callable[[nn.Module], float]


def prune(method: str, model_name: str, weights: str | Path, profile: str | Path | DeviceProfile, target: float = 0.5,
          dataset: str = "digits", data_root: str | Path | None = None, out: str | Path | None = None,
          metric: str = "latency", finetune: TrainConfig | None = None, predictor: str = "lut", mode: str = "auto",
          seed: int = 0, measure_budget_s: float = 10.0, progress: bool = True,
          options: dict[str, Any] | None = None, bn_images: int = RECALIBRATION_IMAGES,
          pool: Any = None, nproc: int = 1, anchor: Anchor | None = None) -> PruneResult:
    """Prune the zoo network ``model_name`` (trained ``weights``) on one of the built-in datasets: loads both
    and calls :func:`prune_module` (see there), with the built-in trainer and top-1 accuracy on the test split.
    ``nproc`` > 1 fine-tunes on that many ``torchrun`` processes (``pruners.finetune_job``)."""
    if nproc < 1:
        raise PruningError(f"nproc must be at least 1, got {nproc}")
    finetune = finetune or TrainConfig(epochs=5, lr=0.01, seed=seed)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    get_method(method).options(options)  # a bad option is refused before any loading
    splits = load_dataset(dataset, data_root, seed=seed)
    model = load_trained(model_name, weights, splits.num_classes)
    prof = profile if isinstance(profile, DeviceProfile) else DeviceProfile.load(profile)
    batch = int(prof.meta["settings"].get("batch", 1))
    example = torch.randn(batch, *splits.input_shape, generator=torch.Generator().manual_seed(seed))
    train_loader, val_loader, test_loader = loaders(splits, finetune.batch_size, seed)
    recipe = Recipe(model_name, str(weights), dataset, None if data_root is None else str(data_root), seed)
    settings = {"method": method, "model": model_name, "weights": str(weights), "dataset": dataset,
                "profile": prof.name, "target": target, "metric": metric, "predictor": predictor, "mode": mode,
                "seed": seed, "finetune": finetune.to_dict(), "options": options,
                **({} if anchor is None else {"anchor": anchor.describe()})}
    return prune_module(model, example, prof, method, target, metric, train_loader, val_loader, finetune,
                        lambda m: evaluate(m, test_loader), out, model_name, predictor, mode, measure_budget_s,
                        progress, options, bn_images, settings, pool=pool,
                        launch_finetune=None if nproc == 1 else partial(launch, recipe, nproc), anchor=anchor)


def prune_module(model: nn.Module, example_input: torch.Tensor, profile: str | Path | DeviceProfile,
                 method: str = "splamp", target: float = 0.5, metric: str = "latency", train_loader: Any = None,
                 val_loader: Any = None, finetune: TrainConfig | FineTune | None = None,
                 evaluate_fn: Evaluate | None = None, out: str | Path | None = None, name: str = "model",
                 predictor: str = "lut", mode: str = "auto", measure_budget_s: float = 10.0, progress: bool = True,
                 options: dict[str, Any] | None = None, bn_images: int = RECALIBRATION_IMAGES,
                 settings: dict[str, Any] | None = None, finetune_epochs: int = 5, pool: Any = None,
                 launch_finetune: Callable[..., None] | None = None, anchor: Anchor | None = None) -> PruneResult:
    """Prune any trained ``model`` (run on ``example_input``) with ``method`` to ``target`` (a ratio of the
    original's latency or FLOPs), fine-tune, measure (interleaved with the original for ``measure_budget_s``),
    and write the run folder ``out``.

    ``finetune`` is a ``TrainConfig`` for the built-in trainer on ``train_loader``/``val_loader`` (default
    5 epochs), or the user's own ``finetune(module, epochs)`` (called with ``finetune_epochs``, and between
    the steps of an iterative schedule). ``evaluate_fn(module) -> float`` scores accuracy (default: top-1 in
    percent on ``val_loader``). ``options`` are the method's own settings (the fields of its ``Options``,
    see ``pruners.methods``); unset ones take their defaults. After every surgery the batch norms are
    re-estimated on ``bn_images`` images of ``train_loader`` (0, or no loader: not at all). ``settings``
    identify the search in the run folder (default: method, name, profile, target and the rest given here).
    ``pool``: a measurement pool (``latbench.fleet.pool.RayPool``) that takes the search's measurements.
    ``launch_finetune(pruned, decision, config, folder, progress)`` fine-tunes elsewhere into the built-in
    trainer's checkpoint folder (``pruners.finetune_job.launch``: on several processes), read back here.
    ``anchor``: every measurement, the final one included, on the scale of another pruned network
    (``pruners.oracle.Anchor``): the target is then met at that network's latency in any machine state.
    """
    chosen = get_method(method)
    if bn_images < 0:
        raise PruningError(f"bn_images must be 0 or more, got {bn_images}")
    options = {k: v for k, v in (options or {}).items() if v is not None}
    method_options = chosen.options(options)
    start = time.perf_counter()
    config = finetune if isinstance(finetune, TrainConfig) else TrainConfig(epochs=finetune_epochs, lr=0.01)
    user_finetune = finetune if callable(finetune) else None
    if user_finetune is None and config.epochs > 0 and train_loader is None:
        raise PruningError("fine-tuning needs a train_loader (or a finetune(module, epochs) of your own)")
    if evaluate_fn is None:
        if val_loader is None:
            raise PruningError("give val_loader (top-1 accuracy) or an evaluate(module) -> float of your own")
        evaluate_fn = lambda m: evaluate(m, val_loader)  # noqa: E731 - the default scorer
    bn_images = bn_images if train_loader is not None else 0
    out = Path(out or default_out(name, method, metric, target))
    lock = FolderLock(out, f"latbench prune {method}").acquire()  # one writer per run folder
    try:
        prof = profile if isinstance(profile, DeviceProfile) else DeviceProfile.load(profile)
        model = model.eval()
        arch = trace(model, example_input, name)
        oracle = LatencyOracle(prof, model, arch, example_input, predictor=predictor, mode=mode, pool=pool,
                               anchor=anchor)
        groups = channel_groups(model, arch, example_input)
        problem = Problem(model, arch, groups, example_input, oracle, target, metric, train_loader, val_loader, config,
                          out, progress, bn_images, fine_tune_fn=user_finetune)
        if metric == "latency":
            smallest = Decision({g.id: (0,) for g in groups}, tuple(b.name for b in arch.blocks if b.removable))
            oracle.check_target(target, lambda: problem.build(smallest))
        settings = settings or {"method": method, "model": name, "profile": prof.name, "target": target,
                                "metric": metric, "predictor": predictor, "mode": mode, "options": options,
                                "network": arch.signature(), "finetune": config.to_dict() if user_finetune is None
                                else f"user: {finetune_epochs} epochs",
                                **({} if anchor is None else {"anchor": anchor.describe()})}

        decision, search, knob, searched = _search(problem, chosen, method_options, out, settings)
        pruned, pruned_arch = apply(model, arch, decision, example_input)
        if searched is not None:  # an iterative schedule pruned and trained it during the search
            load_weights(pruned, searched, str(out / SEARCH_WEIGHTS))
        acc_original = evaluate_fn(model)
        acc_cut = evaluate_fn(pruned)
        if searched is None:  # a schedule that trained during the search recalibrated and fine-tuned already
            problem.recalibrate(pruned)
        acc_pruned = evaluate_fn(pruned)
        history = None
        if user_finetune is not None:
            user_finetune(pruned, finetune_epochs)
        elif config.epochs > 0:
            if launch_finetune is not None:
                launch_finetune(pruned, decision, config, out / "finetune", progress)
            history = fit(pruned, train_loader, val_loader, config, checkpoint_dir=out / "finetune", progress=progress,
                          description=f"fine-tuning ({method})")
        acc_finetuned = evaluate_fn(pruned)

        final = replace(oracle.settings, budget_s=measure_budget_s)
        measured = LatencyOracle(prof, model, arch, example_input, predictor=oracle.predictor, mode="measure",
                                 settings=final, backend=oracle.backend, anchor=anchor).measure(pruned, pruned_arch)
        predicted = oracle.predict(pruned_arch)
        result = PruneResult(
            method=method, model=pruned, arch=pruned_arch, decision=decision,
            target={"metric": metric, "ratio": target, "knob": knob, "missed": _missed(metric, target, measured.ratio,
                                                                                       search)},
            accuracy={"original": acc_original, "pruned": acc_pruned, "finetuned": acc_finetuned,
                      "pruned_before_recalibration": acc_cut, "recalibration_images": bn_images,
                      "quick_accuracy_checks": problem.accuracy_checks},
            latency={"backend": oracle.backend_name, "profile": prof.name, "predictor": oracle.predictor,
                     "predicted_ratio": predicted.ratio, "predicted_us": predicted.latency_us,
                     "predicted_interval": [predicted.low, predicted.high],
                     "reference_predicted_us": oracle.reference_predicted_us,
                     "measured_ratio": measured.ratio, "measured_ci": [measured.low, measured.high],
                     "measured_us": measured.latency_us, "reference_measured_us": measured.latency_us / measured.ratio,
                     "reanchored": None if prof.anchoring is None else {"factor": prof.anchoring.factor,
                                                                         "measured_at": prof.anchoring.measured_at}},
            flops={"original": arch.flops(), "pruned": pruned_arch.flops(),
                   "ratio": pruned_arch.flops() / arch.flops()},
            params={"original": arch.params(), "pruned": pruned_arch.params(),
                    "ratio": pruned_arch.params() / arch.params()},
            oracle={**oracle.describe(), "search_cost": problem.search_cost},
            wall_time_s=time.perf_counter() - start, search=search,
            finetune=history.epochs if history else [], settings=settings)
        result.write(out)
        return result
    finally:
        lock.release()


def default_out(name: str, method: str, metric: str, target: float) -> Path:
    """The run folder of a run not given one: ``runs/NAME-METHOD-METRICTARGET`` (a factory spec names no folder,
    so its characters outside ``[A-Za-z0-9_.-]`` become dashes)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    return Path(f"runs/{slug}-{method}-{metric}{target:g}")


def _search(problem: Problem, method: Method, options: Any, out: Path,
            settings: dict[str, Any]) -> tuple[Decision, list, float, dict[str, torch.Tensor] | None]:
    """The method's decision (and the weights it trained, if any), from ``out/search.json`` when an earlier
    run with these settings found it."""
    path, weights = out / SEARCH, out / SEARCH_WEIGHTS
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PruningError(f"{path} is unreadable or truncated ({exc}); delete it to search again") from None
        if not isinstance(saved, dict):
            raise PruningError(f"{path} is not a search record; delete it to search again")
        if saved.get("settings") == settings:
            trained = read_weights(weights) if saved.get("weights") else None
            cost = saved.get("cost") or _cost_of_earlier_run(out)
            if cost and "cost" not in saved:
                dump_json({**saved, "cost": cost}, path)
            problem.search_cost = {**(cost or {}), "resumed": True}
            return Decision.from_dict(saved["decision"]), saved["history"], saved["knob"], trained
        raise PruningError(f"{out} holds a run with other settings; choose another --out or delete it")
    started = time.perf_counter()
    found = method.search(problem, options)
    trained = None
    if found.model is not None:
        trained = found.model.state_dict()
        out.mkdir(parents=True, exist_ok=True)
        save_atomic(trained, weights)
    counts = problem.oracle.counts
    problem.search_cost = {"measurements": counts.measurements, "predictions": counts.predictions,
                           "search_s": round(time.perf_counter() - started, 2)}
    dump_json({"settings": settings, "decision": found.decision.to_dict(), "history": found.history,
               "knob": found.knob, "weights": trained is not None, "cost": problem.search_cost}, path)
    return found.decision, found.history, found.knob, trained


def _cost_of_earlier_run(out: Path) -> dict[str, Any] | None:
    """What the run that found a stored decision spent (its report), for a search record written before
    records kept it."""
    try:
        report = json.loads((out / "report.json").read_text())
        return {"measurements": int(report["oracle"]["counts"]["measurements"]),
                "predictions": int(report["oracle"]["counts"]["predictions"]), "wall_s": float(report["wall_time_s"]),
                "from": "report.json"}
    except (OSError, ValueError, KeyError, TypeError):
        return None


#: how far the final measurement may be from a latency target before the run says it missed
TARGET_TOLERANCE = 0.05


def _missed(metric: str, target: float, measured: float, search: list[dict[str, Any]]) -> str | None:
    """Why a latency target was missed (None when the final measurement is within the tolerance)."""
    if metric != "latency" or abs(measured / target - 1) <= TARGET_TOLERANCE:
        return None
    # a step-by-step search logs the count of candidates as "measured" and the ratio as "measured_ratio"
    tried = sorted({round(float(h.get("measured_ratio", h.get("measured"))), 3) for h in search
                    if "measured_ratio" in h or "measured" in h})
    how = (f"the search measured {', '.join(map(str, tried))}: no candidate of this method landed closer"
           if tried else "the search trusted predictions alone (oracle predict), and they are off here")
    return (f"measured {measured:.3f} against the target {target:g} (outside ±{TARGET_TOLERANCE:.0%}): {how}; "
            "try --oracle measure, another method, or a profile that covers this network's layers")
