"""The README's Markdown table of one or more ``pruning_pareto.py`` result files, printed as written there.

    python benchmarks/pareto_table.py benchmarks/results/pruning_pareto_hybrid_0.35.json [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

COLUMNS = ("target", "method", "run measured (95% CI)", "side by side", "predicted", "accuracy (3 seeds)", "MFLOPs",
           "params", "removed blocks / layers", "measurements", "wall time")


def accuracy_cell(r: dict[str, Any]) -> str:
    """A row's accuracy: mean ± standard deviation over the fine-tuning seeds, or the run's own (seed 0)."""
    if "accuracy_mean" in r:
        return f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}"
    return f"{r['accuracy']:.2f} (seed 0)"


def cells(r: dict[str, Any]) -> list[str]:
    """One row's cells (an error row: the method's one-line refusal)."""
    if "error" in r:
        return [f"{r['target']:g}", r["method"], f"refused: {r['error']}", *[""] * (len(COLUMNS) - 3)]
    lo, hi = r["measured_ci"]
    j = r.get("side_by_side")
    side = f"{j['median']:.3f} ({j['low']:.3f}–{j['high']:.3f})" if j else "–"
    acc = accuracy_cell(r)
    return [f"{r['target']:g}", r["method"], f"{r['measured_ratio']:.3f} ({lo:.3f}–{hi:.3f})", side,
            f"{r['predicted_ratio']:.3f}", acc, f"{r['mflops']:.1f}", f"{r['params_k']:.0f} k",
            f"{r.get('removed_blocks', 0)} / {r.get('removed_layers', 0)}", str(r["measurements"]),
            f"{r['wall_s']:.0f} s"]


def table(paths: list[Path]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for path in paths:
        lines += ["| " + " | ".join(cells(r)) + " |" for r in json.loads(path.read_text())["rows"]]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path)
    print(table(p.parse_args().results))


if __name__ == "__main__":
    main()
