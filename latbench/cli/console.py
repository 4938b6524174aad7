"""Console output shared by the commands: rich consoles that do not cut lines in a pipe, progress bars, units."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from latbench.errors import OutputError
from latbench.measure.record import format_us


def console(stderr: bool = False, wide: bool = False):
    """A rich console; ``wide``: in a pipe, as wide as the content (tables are not cut to 80 columns)."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # a pipe or a file: lines are not cut at 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=1000 if wide else None)
    return console


def progress_bar():
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=console(stderr=True), transient=True)


def measure_with_progress(measure_fn, runnable, settings, name: str):
    with progress_bar() as bar:
        task = bar.add_task(f"measuring {name}", total=settings.budget_s, info="warming up")

        def on_progress(p: dict[str, Any]) -> None:
            rel = p["rel_ci"]
            ci = f"±{rel * 100:.2f}% (target ±{settings.target_rel_ci * 100:g}%)" if rel < 1e9 else "…"
            bar.update(task, completed=min(p["elapsed_s"], p["budget_s"]), info=f"{p['runs']} runs, CI {ci}")

        return measure_fn(runnable, settings, name=name, progress=on_progress)


us = format_us


def _probe(folder: Path) -> None:
    """Write and remove a temporary file in ``folder``, or in its nearest existing ancestor when it does not
    exist yet (nothing is created: a refused command leaves no folder behind)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OSError(f"{existing} is a file, not a folder")
    with tempfile.NamedTemporaryFile(dir=existing, prefix=".latbench-probe."):
        pass


def check_writable(path: str) -> None:
    """Refuse an output file that cannot be written, before any work (``os.access`` says yes to ``/proc`` as
    root, so a temporary file is written and removed where it would go)."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    try:
        _probe(target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_writable_folder(path: str | Path) -> None:
    """Refuse an output folder that cannot be created or written in, before any work."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write into {path}: it is a file, not a folder")
    try:
        _probe(folder)
    except OSError as exc:
        raise OutputError(f"cannot write into {path}: {exc.strerror or exc}") from None


