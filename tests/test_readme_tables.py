"""The README's result tables say what their committed result files say (``benchmarks/readme_tables.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_tables  # noqa: E402


def test_every_marked_readme_table_matches_its_result_files():
    assert readme_tables.stale(readme_tables.README.read_text()) == []


def test_the_check_names_a_table_whose_cell_differs_from_its_file():
    text = readme_tables.README.read_text()
    row = json.loads((readme_tables.RESULTS / "pool_scaling.json").read_text())["rows"][0]
    cell = f"{row['wall_s']:.1f} s"  # the first wall time of the pool table, as the file has it
    body = dict(readme_tables.blocks(text))["pool-scaling"]
    assert cell in body
    edited = text.replace(body, body.replace(cell, f"{row['wall_s'] + 1:.1f} s", 1), 1)
    problems = readme_tables.stale(edited)
    assert len(problems) == 1 and problems[0].startswith("pool-scaling: README ")
    # rendering again restores the file's number
    assert readme_tables.stale(readme_tables.render(edited)) == []


def test_the_pareto_rows_are_the_files_numbers():
    """One Pareto table's cells recomputed here from its file, independently of the renderer."""
    rows = json.loads((readme_tables.RESULTS / "pruning_pareto_hybrid_0.35.json").read_text())["rows"]
    body = dict(readme_tables.blocks(readme_tables.README.read_text()))["pareto-resnet56-0.35"]
    written = {line.split(" | ")[1]: line.split(" | ") for line in body.splitlines()[2:]}
    assert set(written) == {r["method"] for r in rows}
    for r in rows:
        cells = written[r["method"]]
        assert float(cells[2].split(" ")[0]) == round(r["measured_ratio"], 3)
        assert float(cells[3].split(" ")[0]) == round(r["side_by_side"]["median"], 3)
        mean = float(cells[5].split(" ± ")[0])
        assert mean == round(sum(r["accuracy_seeds"]) / len(r["accuracy_seeds"]), 2)
        assert cells[9] == str(r["measurements"])
