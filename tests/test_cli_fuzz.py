"""Every subcommand's options, fuzzed with values a user gets wrong: never a traceback, always one line and
exit code 2. Each drawn command line holds at least one bad value, so nothing is measured or trained."""

from __future__ import annotations

import argparse
import contextlib
import io
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latbench.cli import build_parser, main

#: values no number or choice option accepts
BAD = ["", "-1", "nan", "inf", "-inf", "1e309", "abc", "ü", "3x", "/proc/latbench/x"]
ANY = [*BAD, "0", "1", "0.5", "resnet20", "smallconv", "99999999999999999999"]


def _checked(action: argparse.Action) -> bool:
    """An option whose value the parser itself checks: a range-checked number or a fixed set of choices."""
    return bool(action.choices) or getattr(action.type, "__name__", "").startswith(("an integer", "a number"))


#: per subcommand: every option taking a value, and those among them the parser checks
OPTIONS, CHECKED = {}, {}
for name, sub in next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices.items():
    valued = [a for a in sub._actions if a.option_strings and a.nargs != 0 and "--help" not in a.option_strings]
    OPTIONS[name] = sorted(a.option_strings[-1] for a in valued)
    CHECKED[name] = sorted(a.option_strings[-1] for a in valued if _checked(a))


@st.composite
def command_lines(draw):
    """A subcommand with up to four options, one of them a checked option given a value it refuses (so the
    parser stops the command before any work)."""
    name = draw(st.sampled_from(sorted(n for n in CHECKED if CHECKED[n])))
    bad = draw(st.sampled_from(CHECKED[name]))
    others = draw(st.lists(st.sampled_from([o for o in OPTIONS[name] if o != bad]), max_size=3, unique=True))
    argv = [name]
    if name in ("inspect", "train"):
        argv.append(draw(st.sampled_from(["resnet20", "nosuchnet"])))
    if name == "prune":
        argv.append(draw(st.sampled_from(["uniform", "nosuch"])))
    pairs = [[option, draw(st.sampled_from(ANY))] for option in others]
    pairs.insert(draw(st.integers(0, len(pairs))), [bad, draw(st.sampled_from(BAD))])
    return argv + [token for pair in pairs for token in pair]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_any_bad_option_is_one_line_and_exit_code_2(tmp_path_factory, argv):
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("fuzz"))  # whatever a command would write lands here
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    finally:
        os.chdir(here)
    text = err.getvalue()
    assert "Traceback" not in text, (argv, text)
    lines = [ln for ln in text.splitlines() if ln.strip() and "warning" not in ln]
    assert code == 2 and len(lines) == 1, (argv, code, text)
