"""Leave one family out of an extended profile: do the predictors transfer to a family's new shapes?

An extended profile (``latbench profile --extend``) holds the zoo's families and a family a user brought, its
layers and networks measured in the profile's machine state (the extension re-measures old references and
scales its samples to that state). Each family is left out in turn (``predictor_accuracy.leave_one_family_out``:
predictors built from the other families' layer samples, calibrated on their networks) and its own profile
networks are predicted. The user families share every op kind with a zoo family, so what is new there is only
shapes: the case the learned predictors are meant to cover without extending. Reports, per profile, family and
predictor: within ±10% / ±5%, Spearman, and the median signed error (``median_error``) with the errors'
standard deviation, which separate a wrong level from a wrong ranking. Measures nothing: the profiles' own samples.

    PYTHONPATH=benchmarks python benchmarks/family_transfer.py runs/extension-xeon/*/
        [--samples-per-term 4] [--out benchmarks/results/family_transfer.json]

``--samples-per-term N`` sets how many calibration networks each term of the layer-sum calibration needs
(``latbench.predictors.layer_sum.SAMPLES_PER_FEATURE``, 4): with more, the calibration fits fewer terms (12, then
intercept and one scale per op kind, then intercept and one scale), to see whether a simpler fit carries over.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from predictor_accuracy import RESULTS, leave_one_family_out

from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from latbench.predictors import layer_sum


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profiles", nargs="+", help="profile folders (extended ones hold a user's family)")
    p.add_argument("--samples-per-term", type=int, default=layer_sum.SAMPLES_PER_FEATURE,
                   help="calibration networks each calibration term needs (default %(default)s)")
    p.add_argument("--out", default=str(RESULTS / "family_transfer.json"))
    return p


def main() -> None:
    args = parser().parse_args()
    layer_sum.SAMPLES_PER_FEATURE = args.samples_per_term
    report = {}
    for folder in args.profiles:
        profile = DeviceProfile.load(folder)
        families = list(profile.family_archs)
        result = leave_one_family_out(profile, families)
        report[Path(folder).name] = result
        for fam, by_kind in result.items():
            print(f"{Path(folder).name[-30:]:30s} {fam[-14:]:14s}" + "".join(
                f"  {k} " + (f"{m['within_10pct'] * 100:3.0f}% (bias {m['median_error']:+.1%}, sd {m['error_sd']:.1%})"
                             if "within_10pct" in m else "refuses") for k, m in by_kind.items()), flush=True)
    dump_json({"benchmark": "family_transfer", "samples_per_term": args.samples_per_term, "profiles": report}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
