"""``make demo`` as a benchmark: run ``latbench pipeline`` and keep its result for the README.

Runs the pipeline into ``--out`` (resumed where it stopped, as the pipeline itself is) with any
pipeline flags given after ``--``, then writes ``pipeline_demo.json`` from its stage records: the
settings, each stage's seconds, the profile and its anchor factor, the trained accuracy and the
final table's rows. ``--machine`` says what else ran on the machine meanwhile.

    python benchmarks/pipeline_demo.py [--out runs/pipeline-demo] [--machine TEXT] [-- PIPELINE FLAGS]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from latbench.cli import main as latbench
from latbench.jsonio import dump_json

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("profile", "accuracy", "analyze", "train", "prune", "report")


def result(out: Path, command: str, machine: str) -> dict:
    """The benchmark record of a finished pipeline run in ``out``."""
    stages = {name: json.loads(next((out / "stages").glob(f"*-{name}.json")).read_text()) for name in STAGES}
    return {"benchmark": "pipeline", "command": command,
            "date": datetime.now(timezone.utc).date().isoformat(), "machine": machine,
            "settings": json.loads((out / "pipeline.json").read_text())["settings"],
            "stages": {name: s["seconds"] for name, s in stages.items()},
            "profile": stages["profile"]["name"], "anchor_factor": stages["profile"]["anchor_factor"],
            "train_test_accuracy": stages["train"]["test_accuracy"], "rows": stages["report"]["rows"]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/pipeline-demo", help="the pipeline's run folder")
    p.add_argument("--machine", default="2-vCPU AMD EPYC VM, nothing else running",
                   help="the machine and what else ran on it")
    p.add_argument("--result", default=str(RESULTS / "pipeline_demo.json"))
    p.add_argument("flags", nargs="*", help="pipeline flags, after --")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    pipeline_args = ["pipeline", "--out", args.out, *args.flags]
    code = latbench(pipeline_args)
    if code != 0:
        return code
    shown = " ".join(["latbench", *pipeline_args])
    dump_json(result(Path(args.out), shown + ("" if args.flags else " (the defaults of make demo)"),
                     args.machine), args.result)
    print(f"wrote {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
