"""A network that only this file defines, added to a small profile with ``--extend`` and predicted as a family:
its source and digest are recorded, its candidates are built by surgery, nothing measured before is lost or
measured twice, and a changed source is refused rather than mixed in."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from latbench.arch import trace
from latbench.cli import main
from latbench.device_profile import DeviceProfile
from latbench.errors import InputShapeError, ModelLoadError, ProfileError, UnknownModelError
from latbench.models.family import family
from latbench.profiler.run import ProfileSettings, extension_settings, profile_device

SHAPE = (3, 16, 16)


class TwoStage(nn.Module):
    """Conv-BN-ReLU, a residual 3x3 pair, a strided conv and a linear head."""

    def __init__(self, width: int = 24, wide: int = 40) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.down = nn.Sequential(nn.Conv2d(width, wide, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(wide),
                                  nn.ReLU())
        self.head = nn.Linear(wide, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        return self.head(self.down(x).mean(dim=(2, 3)))


def two_stage() -> nn.Module:
    return TwoStage()


FACTORY = f"{__file__}:two_stage"
BASE = dict(families=["smallconv"], threads=1, budget_min=5, networks_per_family=8, min_networks_per_family=8,
            passes=2, step=16, refine=False, network_seconds=3)
TINY = dict(families=[FACTORY], input_shape=SHAPE, threads=1, budget_min=5, networks_per_family=8,
            min_networks_per_family=8, passes=2, step=16, refine=False, network_seconds=6)


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    with open(folder / name, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    """(a small profile of one built-in family, a copy of it extended with this file's network)."""
    root = tmp_path_factory.mktemp("profiles")
    base = root / "base"
    profile_device(ProfileSettings(**BASE), out=base, progress=False)
    extended = root / "extended"
    shutil.copytree(base, extended)
    meta = json.loads((extended / "profile.json").read_text())
    # a budget of under a second cannot cover the plan: the extension still ends with its first grid pass and
    # its minimum of networks
    settings = extension_settings(meta, [FACTORY], SHAPE, budget_min=0.01, networks_per_family=8,
                                  min_networks_per_family=8, refine=False, network_seconds=3)
    profile_device(settings, out=extended, progress=False, extend=True)
    return base, extended


@pytest.fixture(scope="module")
def user_profile(profiles):
    return profiles[1]


def test_the_profile_records_how_to_rebuild_the_family(user_profile):
    meta = json.loads((user_profile / "profile.json").read_text())
    expected = trace(TwoStage(), torch.zeros(1, *SHAPE), FACTORY).base.digest
    assert meta["families"] == ["smallconv", FACTORY]
    assert meta["family_sources"][FACTORY] == {"kind": "factory", "input_shape": list(SHAPE), "digest": expected}
    assert meta["family_sources"]["smallconv"]["kind"] == "zoo"
    assert meta["status"] == "complete"


def test_an_extension_keeps_every_earlier_sample_and_measures_only_what_was_missing(profiles):
    base, extended = profiles
    for name in ("layers.csv", "models.csv"):
        before, after = _rows(base, name), _rows(extended, name)
        assert after[:len(before)] == before  # every earlier row, unchanged, in its place
        keys = [r["key"] for r in after]
        assert len(set(keys)) == len(keys)  # nothing measured twice
    new_models = _rows(extended, "models.csv")[len(_rows(base, "models.csv")):]
    assert new_models and {r["family"] for r in new_models} == {FACTORY}
    assert any(r["split"] == "valid" for r in new_models)
    new_layers = _rows(extended, "layers.csv")[len(_rows(base, "layers.csv")):]
    old_keys = {r["key"] for r in _rows(base, "layers.csv")}
    assert new_layers and not {r["key"] for r in new_layers} & old_keys
    meta = json.loads((extended / "profile.json").read_text())
    ext = meta["extensions"][-1]
    assert ext["families"] == [FACTORY] and ext["status"] == "complete" and ext["minutes"] < 5
    assert meta["status"] == "complete" and meta["layers_complete_through_pass"] == 1
    assert len(new_models) == 8  # the minimum of networks, whatever the budget
    factor = meta["family_state"][FACTORY]
    assert ext["state_factors"] == [round(factor, 4)] and 0.2 < factor < 5
    refs = [float(r["median_us"]) for r in _rows(base, "layers.csv") if r["shape_key"] == "reference"]
    new_refs = [float(r["median_us"]) for r in new_layers if r["shape_key"] == "reference"]
    assert ext["layer_state"] == pytest.approx(np.median(new_refs) / np.median(refs), abs=1e-4)
    # the new family's rows are brought to the profile's state by that factor, the old ones untouched
    profile, plain = DeviceProfile.load(extended), _rows(extended, "models.csv")
    _, normalised = profile.network_samples()
    for row, value in zip(plain, normalised, strict=True):
        if row["family"] == FACTORY:
            assert value == pytest.approx(float(row["median_us"]) / factor)


def test_a_user_family_is_predicted_and_its_candidates_built_like_a_built_in_one(user_profile):
    profile = DeviceProfile.load(user_profile)
    arch = profile.family_archs[FACTORY]
    rng = np.random.default_rng(0)
    variants = [arch.with_widths({g.id: int(rng.integers(1, g.channels + 1)) for g in arch.prunable_groups})
                for _ in range(4)]
    for v in variants:
        built = profile.families[FACTORY].build(v)
        assert trace(built, torch.zeros(1, *SHAPE), FACTORY).effective() == v.effective()
    predicted = profile.predictor("lut").predict_many([arch, *variants])[0]
    assert np.all(predicted > 0)
    smallest = arch.with_widths({g.id: 1 for g in arch.prunable_groups})
    assert profile.predictor("lut").predict_many([smallest])[0][0] < predicted[0]
    notes = [n for v in variants for n in profile.predictor("lut").predict(v).notes]
    assert not [n for n in notes if "never measured" in n]  # the extension covered every layer shape
    assert profile.meta["validation"]["lut"]["n"] > DeviceProfile.load(user_profile.parent / "base").meta[
        "validation"]["lut"]["n"]  # the new family's held-out networks are validated too


def test_a_family_no_calibration_network_came_from_carries_the_family_transfer_spread(profiles):
    from latbench.predictors import build_predictor
    from latbench.predictors.layer_sum import FAMILY_TRANSFER_SIGMA

    extended = DeviceProfile.load(profiles[1])
    arch = extended.family_archs[FACTORY]
    narrow = arch.with_widths({g.id: max(1, g.channels // 2) for g in arch.prunable_groups})
    archs, measured = extended.network_samples("calib")
    builtin = np.array([a.name == "smallconv" for a in archs])
    before = build_predictor("xgb", extended.meta, extended.layers)  # every layer sample, smallconv's networks only
    before.fit([a for a, b in zip(archs, builtin, strict=True) if b], measured[builtin])
    seen = copy.copy(before)  # the same predictor, told that the family was calibrated
    seen.calibration = {**before.calibration, "families": [*before.calibration["families"], arch.base.layers_digest]}
    (_, sigma), (_, sigma_seen) = (p.predict_many([arch, narrow]) for p in (before, seen))
    assert np.allclose(sigma, np.sqrt(sigma_seen**2 + FAMILY_TRANSFER_SIGMA**2))
    assert any("no network of this family was calibrated" in n for n in before.predict(narrow).notes)
    assert not any("no network of this family" in n for n in seen.predict(narrow).notes)
    after = extended.predictor("xgb")  # the extension calibrated the family: no transfer term, no note
    assert arch.base.layers_digest in after.calibration["families"]
    assert not any("no network of this family" in n for n in after.predict(narrow).notes)
    smallconv = extended.family_archs["smallconv"]
    assert before.transfer_sigma(smallconv.base) == 0.0 == after.transfer_sigma(smallconv.base)

    # pruning prices ratios to the original, in which a family's level cancels: the oracle's interval is the same
    from pruners.oracle import LatencyOracle

    class Priced:  # the extended profile, its predictor the one given
        def __init__(self, predictor) -> None:
            self._predictor = predictor

        def predictor(self, kind: str = "lut", reanchored: bool = True):
            return self._predictor

        def __getattr__(self, name: str):
            return getattr(extended, name)

    ratio = {}
    for label, predictor in (("unseen", before), ("seen", seen)):
        oracle = LatencyOracle(Priced(predictor), TwoStage(), arch, torch.zeros(1, *SHAPE), predictor="xgb",
                               mode="predict")
        est = oracle.predict(narrow)
        ratio[label] = (est.ratio, est.low, est.high)
    assert np.allclose(ratio["unseen"], ratio["seen"]) and ratio["seen"][1] < ratio["seen"][0] < ratio["seen"][2]


def test_a_family_whose_source_now_builds_another_network_is_refused(user_profile, tmp_path):
    """The profile recorded the digest of what the family's source built then; a source that builds another
    network now (here: the recorded digest is another network's) is refused before anything is measured."""
    changed = tmp_path / "changed"
    shutil.copytree(user_profile, changed)
    meta = json.loads((changed / "profile.json").read_text())
    recorded = meta["family_sources"][FACTORY]["digest"]
    assert recorded == trace(TwoStage(), torch.zeros(1, *SHAPE), FACTORY).base.digest
    meta["family_sources"][FACTORY]["digest"] = trace(TwoStage(width=20), torch.zeros(1, *SHAPE), FACTORY).base.digest
    (changed / "profile.json").write_text(json.dumps(meta))
    rows = len(_rows(changed, "layers.csv")), len(_rows(changed, "models.csv"))
    settings = extension_settings(meta, ["resnet20"], budget_min=0.01)
    with pytest.raises(ModelLoadError, match="now builds a different network"):
        profile_device(settings, out=changed, progress=False, extend=True)
    assert (len(_rows(changed, "layers.csv")), len(_rows(changed, "models.csv"))) == rows  # nothing measured


def test_extensions_that_would_mix_or_change_a_profile_are_refused(profiles, tmp_path):
    base, extended = profiles
    meta = json.loads((extended / "profile.json").read_text())
    with pytest.raises(ProfileError, match="already in the profile"):
        extension_settings(meta, ["smallconv"])
    other = tmp_path / "other"
    shutil.copytree(base, other)
    settings = extension_settings(json.loads((other / "profile.json").read_text()), ["resnet20"], passes=3)
    with pytest.raises(ProfileError, match="profiled with passes 2, not 3"):
        profile_device(settings, out=other, progress=False, extend=True)
    with pytest.raises(ProfileError, match="no profile in"):
        profile_device(settings, out=tmp_path / "none", progress=False, extend=True)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(base, elsewhere)
    meta = json.loads((elsewhere / "profile.json").read_text())
    meta["fingerprint"]["cpu"] = "another CPU"
    (elsewhere / "profile.json").write_text(json.dumps(meta))
    with pytest.raises(ProfileError, match="made with cpu 'another CPU'"):
        profile_device(extension_settings(meta, ["resnet20"]), out=elsewhere, progress=False, extend=True)


def test_a_family_needs_a_known_name_or_an_input_shape():
    with pytest.raises(InputShapeError, match="give its input shape"):
        family(FACTORY)
    with pytest.raises(UnknownModelError):
        family("no_such_net", SHAPE)
    with pytest.raises(InputShapeError, match="takes input 3x32x32"):
        family("resnet20", SHAPE)
    assert family("resnet20").input_shape == (3, 32, 32)


@pytest.mark.parametrize(("flags", "words"), [
    (["--precision", "fp16"], "keeps the profile's precision"),
    (["--batch", "4"], "keeps the profile's batch"),
    (["--out", "elsewhere"], "drop --out"),
    (["--from", "x"], "not both"),
])
def test_the_extend_command_refuses_other_engine_settings_in_one_line(capsys, profiles, flags, words):
    _, extended = profiles
    code = main(["profile", "--extend", str(extended), "--models", "resnet20", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and "\n" not in err and "Traceback" not in err


def _layer_rows(old: list[float], new: list[float]) -> list[dict[str, str]]:
    sample = {"shape_key": "conv-x", "median_us": "50"}
    return ([{"shape_key": "reference", "median_us": str(v)} for v in old] + [sample]
            + [{"shape_key": "reference", "median_us": str(v)} for v in new] + [sample])


def test_state_agreement_warns_when_layers_and_networks_drift_apart():
    from latbench.profiler.run import state_agreement

    rows = _layer_rows([80.0, 79.0, 82.0], [168.0, 170.0])  # the reference layer: 169 / 80 = 2.1125x slower
    start = 4  # three old reference rows and one old sample
    uneven = state_agreement(rows, {"layer_rows_at_start": start, "state_factors": [5.36]})
    assert uneven["layer_state"] == pytest.approx(2.1125, abs=1e-4)
    assert "2.11x" in uneven["warning"] and "5.36x" in uneven["warning"]
    even = state_agreement(rows, {"layer_rows_at_start": start, "state_factors": [2.3, 2.0, 2.2]})
    assert even == {"layer_state": pytest.approx(2.1125, abs=1e-4)}  # 2.2 / 2.1125 is within 1.25
    assert state_agreement(rows, {"layer_rows_at_start": len(rows), "state_factors": [2.0]}) == {}  # no new reference


def test_network_variants_are_distinct_where_a_draw_repeats_an_earlier_one():
    """The variants' random draws are seeded by the family's name; for this name (the factory's path in another
    clone) one draw of this small network rounds back to an earlier variant, which is drawn again."""
    from latbench.profiler.plan import network_variants

    base = trace(two_stage(), torch.randn(1, 3, 32, 32), "two_stage")
    variants = network_variants("/tmp/fresh/tests/test_user_families.py:two_stage", base, 8, align=16)
    assert len(variants) == 8 and len({(v.widths, v.removed) for v in variants}) == 8
    assert variants[0].widths == base.width_tuple  # the full network first, as before
