"""Every code block of README.md runs as written.

``python`` blocks run in README order in one fresh interpreter, in one namespace (later blocks use what earlier
ones define); ``bash`` blocks are commands: ``latbench ...`` runs through the real CLI with small budgets (the
values of the budget flags below are rewritten), interleaved with the Python blocks in README order, in a
temporary folder holding copies of the shipped profiles the blocks name (re-anchoring and ``profile --extend``
write into a profile) and of ``examples/``; no measurement there takes more than ``MEASURE_BUDGET_S``.
``python benchmarks/X.py ARGS`` is checked by the script's own argument parser (``parser().parse_args(ARGS)``),
``make X`` by the Makefile having target X. ``text`` and unlabelled blocks (transcripts, synopses) are not run.
A block that cannot run here says why on the line before it: ``<!-- run: skip (REASON) -->``.

Run as a script (``python tests/test_readme_commands.py PLAN RESULTS``), this file is the driver that executes
a plan in the temporary folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

FENCE = re.compile(r"^\s*```\s*([\w+-]*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*run:\s*skip\b(.*?)-->\s*$")
SKIP_REASON = re.compile(r"^\s*\((.*\S.*)\)\s*$")
MAX_SKIPS = 5
#: harmless shell commands a bash block may use to prepare a file for the next command
SHELL = {"echo", "printf", "mkdir", "cat", "ls"}
#: budget flags and the values the suite runs them with (minutes, samples, epochs, episodes, seconds)
SMALL = {"--budget-min": "0.05", "--networks": "2", "--samples": "6", "--epochs": "1", "--finetune-epochs": "0",
         "--episodes": "2", "--reanchor": "1", "--budget": "1", "--measure-budget": "1", "--compare-budget": "1"}
#: flags whose value is optional (``--reanchor`` alone: the default seconds)
OPTIONAL_VALUE = {"--reanchor"}
#: per subcommand, budget flags added when a README line leaves them at their (large) defaults
ADDED = {"train": {"--epochs": "1"}, "prune": {"--finetune-epochs": "0", "--measure-budget": "1"},
         "measure": {"--budget": "1"}, "profile": {"--networks": "2"}}
#: seconds any one measurement may take in the suite (``MeasureSettings.budget_s`` capped in the driver): the
#: suite checks that every block and command runs, not what they measure; commands take no flag for most budgets
MEASURE_BUDGET_S = 0.02
TIMEOUT_S = 420


@dataclass
class Block:
    lang: str
    line: int  # README line of the opening fence
    body: list[str]
    skip: str | None = None  # the reason of a skip marker ("" when it gives none)

    @property
    def first_line(self) -> str:
        return next((ln for ln in self.body if ln.strip()), "").strip()


@dataclass
class Command:
    block: Block
    line: int
    text: str  # the line as written (continuations joined)
    words: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        head = self.words[0]
        if head == "latbench":
            return "latbench"
        if head == "make":
            return "make"
        if head == "python" and len(self.words) > 1 and self.words[1].startswith("benchmarks/"):
            return "benchmark"
        return "shell" if head in SHELL else "other"


def readme_blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if FENCE.match(lines[j])), None)
        assert end is not None, f"README.md:{i + 1}: code block never closed"
        marker = SKIP.match(lines[i - 1]) if i else None
        reason = None
        if marker:
            has_reason = SKIP_REASON.match(marker.group(1))
            reason = has_reason.group(1).strip() if has_reason else ""
        blocks.append(Block(opening.group(1).lower(), i + 1, lines[i + 1:end], reason))
        i = end + 1
    return blocks


def commands(block: Block) -> list[Command]:
    """The commands of a bash block: continuation lines joined, comments and comment-only lines dropped."""
    out, pending, start = [], "", 0
    for offset, raw in enumerate(block.body):
        if not pending:
            start = block.line + 1 + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text, pending = (pending + raw).strip(), ""
        words = shlex.split(text, comments=True)
        if words:
            out.append(Command(block, start, text, words))
    assert not pending, f"README.md:{block.line}: a bash block ends in a line continuation"
    return out


def small_budgets(argv: list[str]) -> list[str]:
    """``argv`` of a ``latbench`` line with every budget flag at the suite's small value."""
    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        flag, eq, _ = word.partition("=")
        if flag in SMALL and eq:
            out.append(f"{flag}={SMALL[flag]}")
        elif flag in SMALL:
            out += [flag, SMALL[flag]]
            given = i + 1 < len(argv) and not argv[i + 1].startswith("-")
            if flag in OPTIONAL_VALUE and given:
                try:
                    float(argv[i + 1])
                except ValueError:
                    given = False
            i += given
        else:
            out.append(word)
        i += 1
    given = {w.partition("=")[0] for w in out}
    command = out[0] if out else ""
    out += [w for flag, value in ADDED.get(command, {}).items() if flag not in given for w in (flag, value)]
    if command == "predict" and "--measure" in given and not given & {"--reanchor", "--no-reanchor"}:
        out += ["--reanchor", SMALL["--reanchor"]]  # on by default with --measure, for 8 s
    return out


def profiles_named(blocks: list[Block]) -> list[str]:
    """The shipped profiles the code blocks name (only they are copied: ``devices --check --reanchor``
    re-anchors every profile it finds)."""
    words = {w for b in blocks for line in b.body for w in re.split(r"[\s/'\"=]+", line)}
    names = sorted(p.name for p in (ROOT / "device_profiles").iterdir() if p.name in words)
    assert names, "no shipped profile named in README.md's code blocks"
    return names


def makefile_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        rule = re.match(r"^([^\s:=#][^:=]*?)\s*:(?![:=])", line)
        if rule:
            targets.update(rule.group(1).split())
    return targets


def benchmark_parser(script: str):
    """The argument parser of ``benchmarks/<script>``: its ``parser()`` function."""
    path = ROOT / script
    assert path.is_file(), f"{script}: no such file"
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # benchmarks import their siblings
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    assert callable(getattr(module, "parser", None)), f"{script} has no parser() building its argument parser"
    return module.parser()


def plan(blocks: list[Block]) -> list[dict]:
    """What the driver runs, in README order: Python blocks and latbench/shell lines of blocks not skipped (a
    line repeated word for word runs once, where it first appears)."""
    steps, seen = [], set()
    for block in blocks:
        if block.skip is not None:
            continue
        if block.lang == "python":
            steps.append({"kind": "python", "line": block.line, "what": block.first_line,
                          "code": "\n".join(block.body)})
        elif block.lang == "bash":
            for cmd in commands(block):
                if cmd.kind == "latbench" and tuple(cmd.words) not in seen:
                    seen.add(tuple(cmd.words))
                    steps.append({"kind": "latbench", "line": cmd.line, "what": cmd.text,
                                  "argv": small_budgets(cmd.words[1:])})
                elif cmd.kind == "shell":
                    steps.append({"kind": "shell", "line": cmd.line, "what": cmd.text, "code": cmd.text})
    return steps


# ---------------------------------------------------------------- the driver (a fresh interpreter)


def _tail(text: str, chars: int = 2000) -> str:
    return text if len(text) <= chars else "..." + text[-chars:]


def cap_measurements(seconds: float) -> None:
    """Every ``MeasureSettings`` made from now on (module constants included: call this before importing the
    modules that hold them) takes at most ``seconds``, in timing blocks of a tenth of it (a measurement stops
    between blocks, so blocks of the default length would overrun a small budget)."""
    assert "latbench.cli" not in sys.modules, "cap the measurements before the commands' modules are imported"
    from latbench.measure import adaptive

    checked = adaptive.MeasureSettings.__post_init__

    def capped(self) -> None:
        object.__setattr__(self, "budget_s", min(self.budget_s, seconds))
        object.__setattr__(self, "block_s", min(self.block_s, seconds / 10))
        checked(self)

    adaptive.MeasureSettings.__post_init__ = capped


def drive(plan_file: str, results_file: str) -> int:
    """Run every step of the plan in order in this folder; one JSON line per step; stop at the first failure."""
    cap_measurements(MEASURE_BUDGET_S)
    namespace: dict = {"__name__": "__readme__"}
    with open(results_file, "a") as results:
        for step in json.loads(Path(plan_file).read_text()):
            out, err, rc, start = io.StringIO(), io.StringIO(), 0, time.perf_counter()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    if step["kind"] == "python":  # its tracebacks give README's line numbers
                        exec(compile("\n" * step["line"] + step["code"], "README.md", "exec"), namespace)
                    elif step["kind"] == "latbench":
                        from latbench.cli import main as latbench

                        rc = latbench(step["argv"])
                    else:
                        done = subprocess.run(["bash", "-c", step["code"]], capture_output=True, text=True)
                        out.write(done.stdout)
                        err.write(done.stderr)
                        rc = done.returncode
                except SystemExit as exc:
                    rc = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - reported with its traceback
                    traceback.print_exc(file=err)
                    rc = 1
            results.write(json.dumps({"line": step["line"], "rc": rc, "seconds": time.perf_counter() - start,
                                      "stdout": _tail(out.getvalue()), "stderr": _tail(err.getvalue())}) + "\n")
            results.flush()
            if rc != 0:
                return 1
    return 0


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def blocks() -> list[Block]:
    return readme_blocks()


def test_skips_say_why_and_are_few(blocks):
    skipped = [b for b in blocks if b.skip is not None]
    assert all(b.skip for b in skipped), [f"README.md:{b.line}" for b in skipped if not b.skip]
    assert len(skipped) <= MAX_SKIPS, [(b.line, b.skip) for b in skipped]
    assert all(b.lang in ("python", "bash") for b in skipped), "only runnable blocks need a skip marker"


def test_the_parser_finds_blocks_commands_and_skips():
    text = ("```bash\nlatbench devices   # list\n  # a comment\nlatbench predict --model a \\\n    --keep 0.5\n```\n"
            "<!-- run: skip (needs X) -->\n```python\nprint(1)\n```\n<!-- run: skip -->\n```\nx\n```\n")
    bash, py, plain = readme_blocks(text)
    assert [c.words for c in commands(bash)] == [["latbench", "devices"],
                                                 ["latbench", "predict", "--model", "a", "--keep", "0.5"]]
    assert (py.lang, py.skip, plain.lang, plain.skip) == ("python", "needs X", "", "")
    assert small_budgets(["devices", "--check", "--reanchor"]) == ["devices", "--check", "--reanchor", "1"]
    assert small_budgets(["predict", "--reanchor", "15", "--json"]) == ["predict", "--reanchor", "1", "--json"]
    assert small_budgets(["predict", "--measure"]) == ["predict", "--measure", "--reanchor", "1"]
    assert small_budgets(["train", "m", "--epochs=30"]) == ["train", "m", "--epochs=1"]
    assert small_budgets(["train", "m"]) == ["train", "m", "--epochs", "1"]


def test_every_bash_line_is_something_the_suite_checks(blocks):
    for block in blocks:
        if block.lang == "bash" and block.skip is None:
            for cmd in commands(block):
                assert cmd.kind != "other", (
                    f"README.md:{cmd.line}: {cmd.text!r} cannot run in the suite; give its block "
                    f"<!-- run: skip (REASON) --> or make the line a latbench, make or benchmark command")
                assert not any(w.startswith("[") or w == "..." for w in cmd.words), (
                    f"README.md:{cmd.line}: {cmd.text!r} is a synopsis, not a command: make it a text block")


def test_make_lines_name_makefile_targets(blocks):
    targets, checked = makefile_targets(), 0
    makefile = (ROOT / "Makefile").read_text()
    for block in blocks:
        if block.lang != "bash" or block.skip is not None:
            continue
        for cmd in (c for c in commands(block) if c.kind == "make"):
            for word in cmd.words[1:]:
                if "=" in word:  # a variable: the Makefile must use it
                    name = word.partition("=")[0]
                    assert f"$({name})" in makefile, f"README.md:{cmd.line}: the Makefile has no variable {name}"
                else:
                    assert word in targets, f"README.md:{cmd.line}: the Makefile has no target {word!r}"
                    checked += 1
    assert checked >= 3, f"only {checked} make targets found in README.md"


def test_benchmark_lines_parse_with_the_scripts_own_parser(blocks):
    checked = 0
    for block in blocks:
        if block.lang != "bash" or block.skip is not None:
            continue
        for cmd in (c for c in commands(block) if c.kind == "benchmark"):
            parser = benchmark_parser(cmd.words[1])
            try:
                parser.parse_args(cmd.words[2:])
            except SystemExit as exc:
                pytest.fail(f"README.md:{cmd.line}: {cmd.text!r}: its parser refuses the arguments ({exc})")
            checked += 1
    assert checked >= 1, "no python benchmarks/... line found in README.md"


def run_plan(steps: list[dict], folder: Path) -> tuple[list[dict], str]:
    """(one result per step run, how the driver ended) of the driver run on ``steps`` in ``folder``."""
    (folder / "plan.json").write_text(json.dumps(steps))
    results_file = folder / "results.jsonl"
    results_file.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "plan.json", str(results_file)],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        ended = f"the driver exited {done.returncode}: {_tail(done.stderr)}"
    except subprocess.TimeoutExpired:
        ended = f"timed out after {TIMEOUT_S} s"
    results = [json.loads(ln) for ln in results_file.read_text().splitlines()] if results_file.exists() else []
    return results, ended


def failure(steps: list[dict], results: list[dict], ended: str) -> str | None:
    """What went wrong, naming the README line, its first line and the stderr tail; None when every step ran."""
    for step, result in zip(steps, results, strict=False):
        if result["rc"] != 0:
            return f"README.md:{step['line']}: {step['what']!r} failed (exit {result['rc']}):\n{result['stderr']}"
    if len(results) < len(steps):
        stuck = steps[len(results)]
        return f"README.md:{stuck['line']}: {stuck['what']!r} did not finish: {ended}"
    return None


def test_a_block_that_raises_or_a_command_that_fails_fails_the_run(tmp_path):
    steps = [{"kind": "python", "line": 10, "what": "x = 1", "code": "x = 1"},
             {"kind": "shell", "line": 15, "what": "echo ok", "code": "echo ok"},
             {"kind": "python", "line": 20, "what": "print(x)", "code": "print(x)\nprint(y)"},
             {"kind": "shell", "line": 30, "what": "echo never", "code": "echo never"}]
    results, ended = run_plan(steps, tmp_path)
    problem = failure(steps, results, ended)
    assert [r["rc"] for r in results] == [0, 0, 1], problem  # stops at the first failure
    assert problem.startswith("README.md:20: 'print(x)' failed (exit 1)"), problem
    assert 'File "README.md", line 22' in problem and "NameError: name 'y' is not defined" in problem, problem

    steps = [{"kind": "shell", "line": 40, "what": "ls missing", "code": "ls no-such-file"}]
    problem = failure(steps, *run_plan(steps, tmp_path))
    assert problem.startswith("README.md:40: 'ls missing' failed (exit 2)") and "no-such-file" in problem, problem


@pytest.mark.slow
def test_readme_runs_as_written(blocks, tmp_path):
    """Python blocks and latbench commands, in README order, in one fresh interpreter in a temporary folder."""
    steps = plan(blocks)
    python_blocks = [b for b in blocks if b.lang == "python" and b.skip is None]
    latbench_lines = {tuple(c.words) for b in blocks if b.lang == "bash" and b.skip is None
                      for c in commands(b) if c.kind == "latbench"}
    assert len(python_blocks) >= 5 and len(latbench_lines) >= 10, (len(python_blocks), len(latbench_lines))
    assert sum(s["kind"] == "python" for s in steps) == len(python_blocks)
    assert sum(s["kind"] == "latbench" for s in steps) == len(latbench_lines)

    from conftest import as_if_made_here  # not at the top: the driver runs this file before latbench is imported

    for name in profiles_named(blocks):  # copies: re-anchoring and --extend write into a profile
        shutil.copytree(ROOT / "device_profiles" / name, tmp_path / "device_profiles" / name)
        # as on the machine the shipped profiles were made on (--extend refuses another CPU's profile), so
        # that the walkthrough passes on any machine
        as_if_made_here(tmp_path / "device_profiles" / name)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    results, ended = run_plan(steps, tmp_path)
    print("README steps (line: seconds):", ", ".join(f"{r['line']}: {r['seconds']:.1f} s" for r in results))
    problem = failure(steps, results, ended)
    assert problem is None, problem
    assert len(results) == len(steps)


def test_help_lists_every_subcommand_and_every_option_says_what_it_does(capsys):
    import argparse

    from latbench.cli import build_parser, main

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert main(["--help"]) == 0
    listing = " ".join(capsys.readouterr().out.split())
    assert len(sub.choices) >= 9, sorted(sub.choices)
    missing = []
    for name, command in sub.choices.items():
        if not (helps.get(name) or "").strip():
            missing.append(f"{name}: no help text")
        elif " ".join(helps[name].split()) not in listing:
            missing.append(f"{name}: not in latbench --help")
        for action in command._actions:  # a hidden option (help=argparse.SUPPRESS) is hidden on purpose
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help text")
    assert not missing, missing


if __name__ == "__main__":
    raise SystemExit(drive(*sys.argv[1:3]))
