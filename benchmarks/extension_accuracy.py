"""Families a profile never saw: predicted without extending it, then after ``latbench profile --extend``.

For each family (a zoo name or a factory such as ``benchmarks/user_families.py:odd_resnet``), the profile is
copied and the copy extended with that family within ``--budget-min`` minutes (what ``latbench profile
--extend COPY --models F`` runs). Then held-out random-width variants of the family (a seed the extension
never used) are measured interleaved with reference networks of the profile's own families, in one run; the
predictors of the profile before the extension (the LUT refuses shapes it lacks; the learned ones answer) and
after it predict them, each raw, ``+rescaled`` (every prediction scaled by the median of measured /
predicted over the old families' references, the machine's speed now), ``+anchored`` (scaled by the
family's own full-width network and two of its calibration networks, measured in the same run: what
measuring one's own network a few times adds) and ``+reanchored`` (what ``latbench predict --reanchor`` does:
``latbench.anchoring`` re-anchors the profile on the points it picks, here measured in the same interleaved run
as the held-out networks; before the extension those points cover the old families only). Reports, per family:
the extension's minutes and measurements, and within +-10% / +-5%, RMSPE and Spearman before and after.

    python benchmarks/predictor_accuracy.py --extend benchmarks/user_families.py:odd_resnet \\
        benchmarks/user_families.py:vgg11_like benchmarks/user_families.py:mobilenet_e4 [--extend-budget-min 5]
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latbench.anchoring import measure_anchors, rescale
from latbench.arch import Arch
from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from latbench.models.family import family, recorded_families
from latbench.predictors import PREDICTORS, OutOfProfileError, Rescaled, accuracy
from latbench.profiler.plan import network_variants
from latbench.profiler.run import extension_settings, profile_device

REFERENCES_PER_FAMILY = 3
HELD_OUT_SEED = 1000


def short(name: str) -> str:
    return name.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def extend_copy(before: DeviceProfile, profile: Path, name: str, root: Path, budget_min: float,
                shape: tuple[int, int, int]) -> tuple[DeviceProfile, dict[str, Any]]:
    """A copy of ``profile`` (loaded: ``before``) extended with ``name`` (resumed if an earlier run left it
    unfinished); its minutes and the layer and network measurements it added."""
    folder = root / f"{profile.name}+{short(name)}"
    if not (folder / "profile.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(profile, folder)
    meta = json.loads((folder / "profile.json").read_text())
    if name not in meta.get("families", []) or meta["extensions"][-1].get("status") != "complete":
        if name in meta.get("families", []):  # an unfinished extension: resume it
            meta["families"] = [f for f in meta["families"] if f != name]
        settings = extension_settings(meta, [name], shape, budget_min=budget_min)
        profile_device(settings, out=folder, progress=True, extend=True)
    after = DeviceProfile.load(folder)
    ext = after.meta["extensions"][-1]
    return after, {"minutes": ext["minutes"], "layer_measurements": len(after.layers) - len(before.layers),
                    "network_measurements": len(after.models) - len(before.models),
                    "state_factors": ext.get("state_factors", []), "layer_state": ext.get("layer_state"),
                    **({"warning": ext["warning"]} if "warning" in ext else {})}


def references(profile: DeviceProfile, families: list[str]) -> list[Arch]:
    """Per family, its full-width network and its next calibration networks (the first calibration network
    of a family is its full-width one)."""
    archs, _ = profile.network_samples("calib")
    out = []
    for fam in families:
        out += [profile.family_archs[fam], *[a for a in archs if a.name == fam][1:REFERENCES_PER_FAMILY]]
    return out


def scores(make, archs: list[Arch], measured: np.ndarray) -> dict[str, Any]:
    """Accuracy of the predictor ``make()`` gives (a refusal, in making it or predicting, is reported)."""
    try:
        mu, sig = make().predict_many(archs)
    except OutOfProfileError as exc:
        return {"n": len(archs), "unavailable": str(exc).splitlines()[0]}
    return {**accuracy(mu, measured, sig), "predicted_us": [float(v) for v in mu]}


def rescaled(inner, anchors: list[tuple[Arch, float]]) -> Rescaled:
    """``inner`` scaled by the median measured / predicted over ``anchors``, for every family alike (a new
    family has no reference of its own)."""
    predicted = inner.predict_many([a for a, _ in anchors])[0]
    return Rescaled(inner, [], default=statistics.median(m / p for (_, m), p in zip(anchors, predicted, strict=True)))


def evaluate(profile_dir: Path, name: str, per_family: int, budget_s: float, root: Path, budget_min: float,
             shape: tuple[int, int, int]) -> dict[str, Any]:
    base = DeviceProfile.load(profile_dir)
    fam = family(name, shape)
    extended, cost = extend_copy(base, profile_dir, name, root, budget_min, shape)
    arch = extended.family_archs[name]
    step = int(extended.meta["plan"]["step"])
    held_out = [v.arch(arch) for v in network_variants(name, arch, per_family + 1, seed=HELD_OUT_SEED, align=step)[1:]]
    refs = references(base, base.meta["families"])
    own = references(extended, [name])  # the new family's own references
    backend = base.backend()
    runnables = {}
    sources = recorded_families(base.meta)
    for i, a in enumerate(refs):
        runnables[f"reference:{i}"] = backend.deploy(sources[a.name].build(a), torch.randn(*a.base.input_shape))
    for i, a in enumerate(own):
        runnables[f"own:{i}"] = backend.deploy(fam.build(a), torch.randn(*a.base.input_shape))
    for i, a in enumerate(held_out):
        runnables[f"held-out:{i}"] = backend.deploy(fam.build(a), torch.randn(*a.base.input_shape))
    print(f"{short(name)}: measuring {len(held_out)} held-out networks, {len(refs) + len(own)} references and the "
          f"re-anchoring points interleaved (budget {budget_s:.0f} s) ...", flush=True)
    # one interleaved run: the extended profile's re-anchoring points, with everything else as extra runnables
    anchoring = measure_anchors(extended, budget_s, backend=backend, extra=runnables)
    now = anchoring.extra_us
    measured = np.array([now[f"held-out:{i}"] for i in range(len(held_out))])
    anchors = [(a, now[f"reference:{i}"]) for i, a in enumerate(refs)]
    own_anchors = [(a, now[f"own:{i}"]) for i, a in enumerate(own)]
    report: dict[str, Any] = {"family": name, "extension": cost, "held_out": len(held_out),
                              "measured_us": [float(v) for v in measured],
                              "widths": [list(a.width_tuple) for a in held_out],
                              "own_references_us": [m for _, m in own_anchors], "anchoring": anchoring.to_dict()}
    for label, prof in (("before", base), ("after", extended)):
        report[label] = {}
        for kind in PREDICTORS:
            inner = prof.predictor(kind)
            report[label][kind] = scores(lambda p=inner: p, held_out, measured)
            report[label][f"{kind}+rescaled"] = scores(lambda p=inner: rescaled(p, anchors), held_out, measured)
            report[label][f"{kind}+anchored"] = scores(lambda p=inner: Rescaled(p, own_anchors, label="anchored"),
                                                       held_out, measured)
            report[label][f"{kind}+reanchored"] = scores(lambda p=inner, f=prof: rescale(p, f, anchoring),
                                                         held_out, measured)
    return report


def run(profile: Path, families: list[str], per_family: int, budget_s: float, budget_min: float,
        shape: tuple[int, int, int], root: Path, out: Path) -> dict[str, Any]:
    done = json.loads(out.read_text()) if out.exists() else {"benchmark": "extension_accuracy", "families": {}}
    done.update({"profile": profile.name, "extension_budget_min": budget_min, "date": time.strftime("%Y-%m-%d")})
    for name in families:
        if name in done["families"] and "own_references_us" in done["families"][name]:
            print(f"{short(name)}: in {out} already")
            continue
        done["families"][name] = evaluate(profile, name, per_family, budget_s, root, budget_min, shape)
        dump_json(done, out)
        summarise(done["families"][name])
    return done


def summarise(r: dict[str, Any]) -> None:
    e = r["extension"]
    print(f"{short(r['family'])}: extension {e['minutes']:.1f} min, {e['layer_measurements']} layer and "
          f"{e['network_measurements']} network measurements")
    for label in ("before", "after"):
        cells = []
        for kind, m in r[label].items():
            cells.append(f"{kind} " + ("n/a" if "unavailable" in m else
                                       f"{m['within_10pct'] * 100:.0f}%/{m['within_5pct'] * 100:.0f}% "
                                       f"rho {m['spearman']:.2f}"))
        print(f"  {label:6}  " + "  ".join(cells), flush=True)
