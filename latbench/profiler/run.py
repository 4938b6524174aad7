"""Profile a device: measure layer grids and whole networks through one backend, write a profile.

Phases, each resumable: run overhead, staircase step, layer grids (pass by pass, in groups of
``GROUP_SIZE`` samples measured interleaved with a fixed reference layer that tracks the machine's
speed, ``latbench.profiler.layer_group``),
whole-network variants (measured interleaved, by default all in one round-robin run so that
every network sees the same machine; with ``chunk`` > 0 in chunks, each with the full-width
network of every family as an anchor to bring chunks to one machine state), then the
predictors' calibration and validation. Layer rows go to ``layers.csv`` group by group as they are
measured; network rows go to ``models.csv`` when their chunk completes, so a run killed during a
chunk measures that chunk again. ``profile.json`` holds settings, plan, timings and metrics.
Re-running the same command on the same folder resumes where it stopped.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from latbench import __version__
from latbench.arch import Arch
from latbench.arch.spec import LayerSpec
from latbench.backends import require_backend
from latbench.device_profile import DeviceProfile, fingerprint_differences
from latbench.errors import ProfileError
from latbench.folder_lock import FolderLock
from latbench.measure import MeasureSettings, compare, measure
from latbench.models import REGISTRY
from latbench.models.family import Family, family, recorded_families
from latbench.predictors import LutPredictor, accuracy
from latbench.profile import (
    LAYER_COLUMNS,
    MODEL_COLUMNS,
    ProfileMeta,
    anchor_latencies,
    has_blocked_layout,
    new_meta,
    read_meta,
    spec_to_row,
    write_meta,
)
from latbench.profile.integrity import MANIFEST, corrupt_file, manifest
from latbench.profiler import channel_step
from latbench.profiler.journal import Journal, measurement_row
from latbench.profiler.layer_group import layer_groups, measure_group
from latbench.profiler.microbench import build_layer
from latbench.profiler.plan import (
    LAYOUT_UNITS,
    NetworkVariant,
    layer_grids,
    layer_samples,
    network_variants,
    shape_key,
    spec_key,
)
from latbench.profiler.refine import (
    RefineSettings,
    choose,
    held_out_error,
    insert,
    interval_candidates,
    missing_points,
)

LAYER_SETTINGS = MeasureSettings(target_rel_ci=0.02, budget_s=2.0, min_time_s=0.15, warmup_min_s=0.05,
                                 min_blocks=6, block_s=0.01)
#: GPU timings (CUDA events, graph replays) are steady: shorter layer measurements suffice
GPU_LAYER_SETTINGS = replace(LAYER_SETTINGS, min_time_s=0.05, warmup_min_s=0.02, block_s=0.005)
NETWORK_SETTINGS = MeasureSettings(target_rel_ci=0.02, budget_s=40.0, min_time_s=0.3, warmup_min_s=0.1)
NETWORK_SECONDS_EACH = 1.5  # interleaved measuring time per network in a chunk


@dataclass
class ProfileSettings:
    families: list[str]
    backend: str = "onnxruntime"
    device: str | None = None
    threads: int | None = None
    precision: str = "fp32"
    batch: int = 1
    cuda_graph: bool = False  # torch on CUDA: time graph replays
    budget_min: float = 15.0
    networks_per_family: int = 32
    min_networks_per_family: int = 12
    passes: int = 3
    step: int | None = None  # None: measure the staircase
    layer_share: float = 0.6  # of the budget, for layers beyond the first pass
    chunk: int = 0  # networks measured interleaved together (plus one anchor per family); 0: all at once
    seed: int = 0
    refine: bool = True  # spend budget left after the networks on refining the grids
    refine_target: float = 0.05  # ... until new points are interpolated to this median error
    input_shape: tuple[int, int, int] | None = None  # C, H, W of the families that are not built-in networks
    network_seconds: float | None = None  # per interleaved network run; None: network_budget_s(networks)


    def make_backend(self):
        """The engine these settings describe; one line naming what is missing if it cannot run here."""
        return require_backend(self.backend, device=self.device, threads=self.threads, precision=self.precision,
                               **({"cuda_graph": True} if self.cuda_graph else {}))

    def comparable(self) -> dict[str, Any]:
        """What must match for a folder to be resumed."""
        d = asdict(self)
        for k in ("budget_min", "networks_per_family", "min_networks_per_family", "layer_share", "chunk", "refine",
                  "refine_target", "network_seconds"):
            d.pop(k)
        if not d["cuda_graph"]:
            d.pop("cuda_graph")  # as profiles written before the option
        if d["input_shape"] is None:
            d.pop("input_shape")
        else:
            d["input_shape"] = list(d["input_shape"])
        return d


def default_name(fingerprint: dict[str, Any], settings: ProfileSettings) -> str:
    device = fingerprint.get("gpu") or fingerprint.get("cpu") or "device"
    slug = re.sub(r"[^a-z0-9]+", "-", str(device).lower()).strip("-")
    if fingerprint.get("threads"):
        slug += f"-{fingerprint['threads']}t"
    graph = "-graph" if settings.cuda_graph else ""
    return f"{slug}-{settings.backend}{graph}-{settings.precision}-bs{settings.batch}"


class _Progress:
    """A rich progress bar with ETA over all planned measurements (or silence)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("profiling", total=1)

    def phase(self, description: str, total: int, done: int = 0) -> None:
        if self.bar:
            self.bar.update(self.task, description=description, total=max(total, 1), completed=done)

    def advance(self) -> None:
        if self.bar:
            self.bar.advance(self.task)

    def note(self, text: str) -> None:
        if self.bar:
            self.bar.console.print(f"[yellow]note: {text}[/]", soft_wrap=True)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


def first_pass_floor_s(samples: list[tuple[LayerSpec, int]], measured: set[str], settings: MeasureSettings) -> float:
    """Fewest seconds the first grid pass still takes (it runs whatever the budget): each of its samples not yet in
    ``measured`` warms up for at least ``warmup_min_s`` and is timed for at least ``min_time_s``."""
    left = sum(1 for spec, p in samples if p == 1 and spec_key(spec) not in measured)
    return left * (settings.warmup_min_s + settings.min_time_s)


def profile_device(settings: ProfileSettings, out: str | Path | None = None, progress: bool = True,
                   root: str | Path = "device_profiles", extend: bool = False) -> Path:
    """Profile this device for ``settings.families`` into ``out`` (or ``extend`` it), holding the folder's
    lock (``latbench.folder_lock``) while writing; see :func:`_profile_device`."""
    if extend and not (Path(out) / "profile.json").exists():
        raise ProfileError(f"--extend: no profile in {out}")
    if not settings.families:
        raise ProfileError("no model families to profile: give at least one, e.g. --models resnet56")
    backend = settings.make_backend()
    folder = Path(out) if out else Path(root) / default_name(backend.fingerprint(), settings)
    with FolderLock(folder, "latbench profile --extend" if extend else "latbench profile"):
        return _profile_device(settings, backend, folder, progress, extend)


def _profile_device(settings: ProfileSettings, backend, folder: Path, progress: bool, extend: bool) -> Path:
    """Profile this device for ``settings.families``; returns the profile folder.

    The budget counts the time of earlier, interrupted runs on the same folder too. The first
    grid pass and ``min_networks_per_family`` networks are always measured, whatever the budget.

    ``extend``: ``out`` is a finished profile whose families are the first of ``settings.families``
    (:func:`extension_settings`); only what it lacks is measured (grid points the new families' layers
    add, the new families' networks), every earlier row is kept, and the budget is the extension's own.
    The new networks are measured interleaved with the old families' full-width anchors; how far those
    moved from their recorded medians (``family_state``) brings the new rows to the profile's state.
    """
    # a family the folder already records brings its own input shape (an extension adds other families)
    known = recorded_families(read_meta(folder, require=(), context=f"cannot open {folder}"), new=True) \
        if (folder / "profile.json").exists() else {}
    families = {name: known.get(name) or family(name, None if name in REGISTRY else settings.input_shape)
                for name in settings.families}
    fingerprint = backend.fingerprint()
    layer_settings = GPU_LAYER_SETTINGS if backend.device == "cuda" else LAYER_SETTINGS
    reference = channel_step.probe(backend.device, settings.batch)
    meta = _open_folder(folder, settings, fingerprint, layer_settings, extend)
    extension = meta["extensions"][-1] if extend else None
    families = {name: fam.checked() for name, fam in families.items()}
    meta["family_sources"] = {name: fam.to_dict() for name, fam in families.items()}
    meta.setdefault("reference_layer", reference.to_dict())
    timings = meta.setdefault("timings_s", {})
    before = dict(timings)
    started = time.perf_counter()
    budget_s = settings.budget_min * 60

    offset = extension["started_total_s"] if extension else 0.0

    def elapsed() -> float:
        return before.get("total", 0.0) + time.perf_counter() - started

    def spent() -> float:  # against this run's budget: an extension's own time
        return elapsed() - offset

    def run_layer(spec: LayerSpec):
        module, x = build_layer(spec)
        return measure(backend.deploy(module, x), layer_settings)

    def sample_group(items: list[tuple[LayerSpec, int]], journal: Journal) -> list[float]:
        """Measure layer samples ((spec, pass), at most ``GROUP_SIZE``) interleaved with the reference layer
        into the journal, the reference layer's row before and after them; their latencies (us)."""
        timings["total"] = elapsed()  # a run killed later still counts the time it spent up to here
        write_meta(folder, meta)
        ref, rows = measure_group(backend, reference, [spec for spec, _ in items], layer_settings)
        ref_row = {"shape_key": "reference", **spec_to_row(reference), "pass": 0, **ref}
        start = len(journal.rows)
        journal.extend([{"key": f"ref-{start}", **ref_row},
                        *({"key": spec_key(spec), "shape_key": shape_key(spec), **spec_to_row(spec), "pass": p, **r}
                          for (spec, p), r in zip(items, rows, strict=True)),
                        {"key": f"ref-{start + len(items) + 1}", **ref_row}])
        for _ in items:
            bar.advance()
        return [float(r["median_us"]) for r in rows]

    bar = _Progress(progress)
    try:
        if "overhead_us" not in meta:
            meta["overhead_us"] = run_layer(LayerSpec("act", 1, 1, epilogue=("relu",))).median_us
            write_meta(folder, meta)
        if settings.step is None and "staircase" not in meta:
            candidates = channel_step.candidate_steps(backend.device)
            bar.phase("staircase sweep", 2 * max(candidates))
            raw = channel_step.sweep(lambda s: _advance_after(bar, run_layer(s).median_us), max(candidates), reference)
            step, scores, found = channel_step.detect_step(channel_step.smooth(raw), candidates=candidates)
            meta["staircase"] = {"probe": reference.to_dict(), "latency_us": raw, "scores": scores,
                                 "step": step, "found": found}
            write_meta(folder, meta)
        step = settings.step or meta["staircase"]["step"]
        archs = {name: fam.trace(settings.batch) for name, fam in families.items()}
        units = LAYOUT_UNITS if has_blocked_layout(settings.comparable()) else ()
        grids = insert(layer_grids(list(archs.values()), step, settings.passes, units,
                                   misaligned=backend.device == "cuda"),
                       meta.get("refine", {}).get("inserted", []))
        samples = layer_samples(grids)
        variants = interleave([network_variants(f, a, settings.networks_per_family, settings.seed, align=step)
                                for f, a in archs.items()])
        meta["plan"] = {"step": step, "grids": [g.to_dict() for g in grids], "layer_samples": len(samples),
                        "network_variants": len(variants)}
        write_meta(folder, meta)

        layers = Journal(folder / "layers.csv", LAYER_COLUMNS)
        if extension is not None:
            extension.setdefault("layer_rows_at_start", len(layers.rows))
        t0 = time.perf_counter()
        bar.phase("layers", len(samples), sum(spec_key(s) in layers.keys for s, _ in samples))
        floor_s = first_pass_floor_s(samples, layers.keys, layer_settings)
        if floor_s > budget_s - spent():
            bar.note(f"the first grid pass ({sum(p == 1 for _, p in samples)} layer samples) is measured whatever the "
                     f"budget: at least {floor_s / 60:.1f} min against the {settings.budget_min:g} min given")
        complete = settings.passes
        pending = [(spec, p) for spec, p in samples if spec_key(spec) not in layers.keys]
        for group in layer_groups(pending):
            p = group[0][1]
            if p > 1 and spent() > settings.layer_share * budget_s:
                complete = p - 1
                break
            sample_group(group, layers)
        timings["layers"] = before.get("layers", 0.0) + time.perf_counter() - t0
        meta["layers_complete_through_pass"] = complete

        models = Journal(folder / "models.csv", MODEL_COLUMNS)
        t0 = time.perf_counter()
        bar.phase("networks", len(variants), sum(v.key in models.keys for v in variants))
        per_family = {f: sum(r["family"] == f for r in models.rows) for f in archs}
        pending = []
        for v in variants:
            if v.key in models.keys or (extension and v.family not in extension["families"]):
                continue
            if spent() > budget_s and per_family[v.family] >= settings.min_networks_per_family:
                continue
            pending.append(v)
            per_family[v.family] += 1
        anchors = {f: next(v for v in variants if v.family == f) for f in archs}  # full width, first of each
        size = settings.chunk or max(1, len(pending))
        recorded_anchors = anchor_latencies(pd.DataFrame(models.rows)) if models.rows else {}
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            now = _measure_chunk(backend, families, archs, chunk, anchors, models, settings.network_seconds)
            timings["total"] = elapsed()
            if extension:
                _record_state(meta, extension, chunk, now, recorded_anchors)
            for _ in chunk:
                bar.advance()
        timings["networks"] = before.get("networks", 0.0) + time.perf_counter() - t0

        if settings.refine and spent() < budget_s:
            t0 = time.perf_counter()
            _refine(folder, meta, grids, step, settings, layers, sample_group, spent, budget_s, bar)
            timings["refine"] = before.get("refine", 0.0) + time.perf_counter() - t0
    finally:
        bar.close()
        timings["total"] = elapsed()
        if extension:
            extension["minutes"] = round(spent() / 60, 2)
        write_meta(folder, meta)

    if extension:
        extension.update(state_agreement(layers.rows, extension))
        extension["status"] = "complete"
    finish_profile(folder, meta)
    return folder


def _record_state(meta: ProfileMeta, extension: dict[str, Any], chunk: list[NetworkVariant],
                  now: dict[str, float], recorded: dict[str, float]) -> None:
    """The machine state of an extension's networks: the median, over the old families' anchors measured
    in the same run, of now / recorded (above 1: the machine is slower now than when it was profiled)."""
    old = [now[f] / recorded[f] for f in recorded if f in now and f not in extension["families"]]
    if not old:
        return
    factor = float(np.median(old))
    state = meta.setdefault("family_state", {})
    for fam in {v.family for v in chunk}:
        state[fam] = factor
    extension.setdefault("state_factors", []).append(round(factor, 4))


STATE_AGREEMENT = 1.25  # layers and networks of an extension drifting apart by more than this: warn


def state_agreement(layer_rows: list[dict[str, str]], extension: dict[str, Any]) -> dict[str, Any]:
    """How much slower than when profiled the extension's reference layer ran (``layer_state``) against its
    old networks (``state_factors``). Layer rows are brought to the profile's state by the first, the new
    networks by the second; when a load on the machine slows the two apart (time slicing hits a network
    harder than a short layer), the new family's calibration mixes states: a ``warning`` says so."""
    start = int(extension.get("layer_rows_at_start", len(layer_rows)))
    refs = [[float(r["median_us"]) for r in rows if r["shape_key"] == "reference"]
            for rows in (layer_rows[:start], layer_rows[start:])]
    networks = extension.get("state_factors") or []
    if not all(refs) or not networks:
        return {}
    layer = float(np.median(refs[1]) / np.median(refs[0]))
    network = float(np.median(networks))
    out: dict[str, Any] = {"layer_state": round(layer, 4)}
    if not 1 / STATE_AGREEMENT <= network / layer <= STATE_AGREEMENT:
        out["warning"] = (f"the machine's load changed the extension's measurements unevenly: layers ran {layer:.2f}x "
                          f"and networks {network:.2f}x their profiled latency, so the new families' predictions may "
                          f"be off; extend a copy again on a quiet machine")
    return out


def extension_settings(meta: dict[str, Any], new: list[str], input_shape: tuple[int, int, int] | None = None,
                       **run: Any) -> ProfileSettings:
    """The settings that extend a profile (its ``profile.json``) with the ``new`` families: the profile's
    engine, batch, step and passes; ``run`` sets the budget and networks per family."""
    saved = {k: v for k, v in meta.get("settings", {}).items() if k in ProfileSettings.__dataclass_fields__}
    saved.pop("input_shape", None)
    old = list(meta.get("families", []))
    again = [f for f in new if f in old]
    if again:
        raise ProfileError(f"--extend: {', '.join(again)} already in the profile; give only new families")
    return ProfileSettings(**{**saved, "families": old + list(new), "input_shape": input_shape, **run})


def finish_profile(folder: str | Path, meta: ProfileMeta | None = None) -> ProfileMeta:
    """Fit and validate the predictors on the measured samples, save the learned one, mark the
    profile complete. Also re-validates a finished profile after its predictors changed (nothing
    is measured)."""
    folder = Path(folder)
    meta = meta if meta is not None else read_meta(folder)
    profile = DeviceProfile.load(folder, check_fingerprint=False)
    meta["validation"] = profile.validate()
    meta["calibration"] = {k: profile.predictor(k).calibration for k in meta["validation"]
                           if "skipped" not in meta["validation"][k]}
    xgb = meta["validation"].get("xgb")
    if xgb and "skipped" not in xgb:
        profile.predictor("xgb").save(folder)
    meta[MANIFEST] = manifest(folder)
    if meta.get("status") != "complete":
        meta["completed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["status"] = "complete"
    meta["validated"] = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "latbench": __version__}
    write_meta(folder, meta)
    return meta


def _refine(folder: Path, meta: dict[str, Any], grids: list, step: int, settings: ProfileSettings,
            layers: Journal, sample_group, spent, budget_s: float, bar: _Progress) -> None:
    """Refinement rounds (``latbench.profiler.refine``) until the target or the budget. Inserted
    grid values and each round's accuracy (held-out layers, and the lookup table on the held-out
    networks before the round) go to ``meta["refine"]``."""
    rs = RefineSettings(target=settings.refine_target)
    state = meta.setdefault("refine", {"settings": asdict(rs), "inserted": [], "rounds": []})
    rounds = state["rounds"]
    while spent() < budget_s and not (rounds and rounds[-1]["held_out"]["median_ape"] <= rs.target):
        n = len(rounds) + 1
        measured = {r["key"]: float(r["median_us"]) for r in layers.rows}
        picks = choose(interval_candidates(grids, step, measured), rs.batch)
        if not picks:
            break
        record: dict[str, Any] = {"round": n, "minutes": round(spent() / 60, 2),
                                  "layer_samples": sum(r["shape_key"] != "reference" for r in layers.rows)}
        profile = DeviceProfile.load(folder, check_fingerprint=False)
        calib, valid = profile.network_samples("calib"), profile.network_samples("valid")
        if len(calib[0]) >= 3 and len(valid[0]):
            lut = LutPredictor.from_profile(meta, profile.layers)
            lut.fit(*calib)
            net = accuracy(lut.predict_many(valid[0])[0], valid[1])
            record["lut_networks"] = {k: round(net[k], 4) for k in ("within_10pct", "rmspe")}
        inserted = [p.to_dict(n) for p in picks]
        state["inserted"] += inserted
        grids[:] = insert(grids, inserted)
        meta["plan"]["grids"] = [g.to_dict() for g in grids]
        write_meta(folder, meta)
        predicted = {spec_key(s): us for p in picks for s, us in p.points}
        todo = missing_points(grids, layers.keys)
        bar.phase(f"refining grids (round {n})", len(todo))
        pairs = []
        for group in layer_groups([(spec, 1000 + n) for spec in todo]):
            if spent() > budget_s:
                break
            for (spec, _), us in zip(group, sample_group(group, layers), strict=True):
                if spec_key(spec) in predicted:
                    pairs.append((predicted[spec_key(spec)], us))
        if not pairs:
            break
        record["held_out"] = held_out_error(*np.array(pairs).T)
        record["measured"] = len(pairs)
        rounds.append(record)
        write_meta(folder, meta)


def _advance_after(bar: _Progress, value: float) -> float:
    bar.advance()
    return value


def interleave(lists: list[list[NetworkVariant]]) -> list[NetworkVariant]:
    out = []
    for i in range(max(len(x) for x in lists)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


def network_budget_s(networks: int, seconds: float | None = None) -> float:
    """Seconds for one interleaved run of ``networks`` networks: ``seconds`` when given (a profile's
    ``network_seconds``), else enough for the ratios' CIs to close."""
    return seconds or max(NETWORK_SETTINGS.budget_s, NETWORK_SECONDS_EACH * networks)


def _measure_chunk(backend, families: dict[str, Family], archs: dict[str, Arch], chunk: list[NetworkVariant],
                   anchors: dict[str, NetworkVariant], journal: Journal,
                   seconds: float | None = None) -> dict[str, float]:
    """Measure ``chunk`` interleaved with the full-width network of every family (the anchors).

    Each row records its family anchor's latency in the same interleaved run, so rows measured
    at different times can be brought to one machine state (``DeviceProfile`` does this).
    """
    members = {f"anchor:{f}": v for f, v in anchors.items()} | {v.key: v for v in chunk}
    candidates = {name: v.arch(archs[v.family]) for name, v in members.items()}
    runnables = {name: backend.deploy(families[members[name].family].build(arch),
                                      torch.randn(*arch.base.input_shape))
                 for name, arch in candidates.items()}
    budget = network_budget_s(len(runnables), seconds)
    result = compare(runnables, replace(NETWORK_SETTINGS, budget_s=budget), min_rounds=8)
    for v in chunk:
        arch = candidates[v.key]
        journal.append({"key": v.key, "family": v.family, "split": v.split,
                        "widths": " ".join(map(str, v.widths)), "removed": ";".join(v.removed),
                        "flops": arch.flops(), "params": arch.params(),
                        "anchor_us": round(result.measurements[f"anchor:{v.family}"].median_us, 3),
                        **measurement_row(result.measurements[v.key])})
    return {f: result.measurements[f"anchor:{f}"].median_us for f in anchors}


def _open_folder(folder: Path, settings: ProfileSettings, fingerprint: dict[str, Any],
                 layer_settings: MeasureSettings, extend: bool = False) -> ProfileMeta:
    if extend:
        return _open_extension(folder, settings, fingerprint)
    if (folder / "profile.json").exists():
        meta = read_meta(folder, require=(), context=f"cannot resume {folder}")
        _refuse_corrupt(folder, meta)
        if meta.get("settings", {}) != settings.comparable():
            raise ProfileError(f"cannot resume {folder}: it was started with other settings "
                               f"({meta.get('settings')}); use another --out or remove the folder")
        meta["status"] = "running"
        return meta
    folder.mkdir(parents=True, exist_ok=True)
    return new_meta(folder.name, fingerprint, settings.comparable(), settings.families,
                    measure_settings={"layers": asdict(layer_settings), "networks": asdict(NETWORK_SETTINGS)})


def _open_extension(folder: Path, settings: ProfileSettings, fingerprint: dict[str, Any]) -> ProfileMeta:
    """A finished profile opened to be extended with the families ``settings`` adds (or an unfinished
    extension with the same families, resumed); only on the machine and engine it was made with."""
    meta = read_meta(folder, require=(), context=f"cannot extend {folder}")  # profile_device checked it exists
    _refuse_corrupt(folder, meta)
    changed = fingerprint_differences(meta.get("fingerprint", {}), fingerprint)
    if changed:
        c = changed[0]
        raise ProfileError(f"cannot extend {folder}: it was made with {c.key} {c.profile!r}, this machine has "
                           f"{c.here!r}; extend it where it was made, or profile this machine")
    want, saved = settings.comparable(), meta.get("settings", {})
    for key in sorted(set(want) | set(saved)):
        if key not in ("families", "input_shape") and want.get(key) != saved.get(key):
            raise ProfileError(f"cannot extend {folder}: it was profiled with {key} {saved.get(key)!r}, "
                               f"not {want.get(key)!r}; profile the new settings into another folder")
    extensions = meta.setdefault("extensions", [])
    open_ = extensions[-1] if extensions and extensions[-1].get("status") != "complete" else None
    old = [f for f in meta.get("families", []) if not (open_ and f in open_["families"])]
    new = settings.families[len(old):]
    if settings.families[:len(old)] != old:
        raise ProfileError(f"cannot extend {folder}: its families {old} must come first")
    if open_ is not None and open_["families"] != new:
        raise ProfileError(f"cannot extend {folder}: an extension with {', '.join(open_['families'])} is unfinished; "
                           f"run that one again first")
    if not new:
        raise ProfileError(f"--extend: give at least one family that {folder} does not have")
    if meta.get("status") != "complete" and open_ is None:
        raise ProfileError(f"cannot extend {folder}: the profile is not complete; finish it first")
    if open_ is None:
        extensions.append({"families": new, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "started_total_s": float(meta.get("timings_s", {}).get("total", 0.0)),
                           "status": "running"})
    meta["families"] = list(settings.families)
    meta["settings"] = {**saved, **({"input_shape": want["input_shape"]} if "input_shape" in want else {})}
    meta["status"] = "running"
    return meta


def _refuse_corrupt(folder: Path, meta: ProfileMeta) -> None:
    """A profile whose files no longer match its manifest is not resumed or extended (that would bless them);
    the manifest is dropped while the folder is written and recorded again when it completes."""
    bad = corrupt_file(folder, meta)
    if bad:
        raise ProfileError(f"cannot write {folder}: it is corrupt ({bad}); restore it or profile into a new folder")
    meta.pop(MANIFEST, None)
