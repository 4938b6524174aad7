"""Collect LAP's search summaries (episodes, best episode, aim rounds, floor, knob, the targeting loop's
measurements) from run folders into one file.

A Pareto run keeps each method's search in its run folder (``search.json``, not committed); LAP's summary there
holds what the result rows do not: the aim's measured rounds, the wall's target, the floor and the best episode.

    PYTHONPATH=benchmarks python benchmarks/lap_searches.py runs/pareto-lap-menu/resnet56-lap-0.35 ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pruning_pareto import RESULTS

from latbench.jsonio import dump_json


def summary(folder: Path) -> dict:
    """LAP's summary in ``folder/search.json``, its per-network aim widths left out, and the knobs the targeting
    loop measured (knob, predicted and measured ratio, FLOPs)."""
    history = json.loads((folder / "search.json").read_text())["history"]
    lap = next(h["lap"] for h in history if "lap" in h)
    rounds = [{k: v for k, v in r.items() if k != "keep"} for r in lap.get("calibration_rounds", [])]
    return {k: v for k, v in lap.items() if k not in ("calibration_keep", "calibration_rounds")} | (
        {"calibration_rounds": rounds} if rounds else {}) | {"targeting": [h for h in history if "measured" in h]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="LAP run folders")
    p.add_argument("--out", default=str(RESULTS / "lap_searches.json"))
    args = p.parse_args()
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else {"benchmark": "lap_searches", "runs": {}}
    for folder in map(Path, args.folders):
        done["runs"][str(folder)] = summary(folder)
    done["date"] = time.strftime("%Y-%m-%d")
    dump_json(done, out)
    print(f"wrote {out}: {len(done['runs'])} runs")


if __name__ == "__main__":
    main()
