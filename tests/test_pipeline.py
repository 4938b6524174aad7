"""``latbench pipeline``: profile, accuracy, analysis, training, pruning and the side-by-side report, resumable.

One small run (SmallConvNet on digits, two baselines and a method that always fails, predictions only) is
interrupted in its last stage, resumed, and run again; the tests read what it wrote.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_cli import assert_one_line_error, run

from latbench.backends import require_backend
from latbench.cli import main
from latbench.device_profile import DeviceProfile
from pruners import pipeline
from pruners.method import Method, NoOptions
from pruners.methods import METHODS

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ("--model", "smallconv", "--analyze-model", "smallconv", "--target", "0.7", "--epochs", "1",
         "--finetune-epochs", "0", "--oracle", "predict", "--measure-budget", "0.5", "--joint-budget", "0.5",
         "--repeats", "2", "--reanchor-seconds", "0", "--quiet")
METHODS_RUN = ("uniform", "broken", "global")


def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def stage_files(out: Path) -> dict[str, tuple[int, str]]:
    """Each stage record: (modification time in ns, contents)."""
    return {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in sorted((out / "stages").glob("*.json"))}


def _broken(problem, options):
    raise RuntimeError("boom")


@pytest.fixture(scope="module")
def profiles_root(shipped_profile, tmp_path_factory) -> Path:
    """A profiles folder holding the shipped 1-thread profile with this machine's fingerprint."""
    root = tmp_path_factory.mktemp("profiles")
    shutil.copytree(shipped_profile(), root / "match")
    return root


@pytest.fixture(scope="module")
def finished(profiles_root, tmp_path_factory):
    """The small run, interrupted in stage 6 (report), resumed, then run a third time with training, pruning,
    analysis and measurement made to fail if called: what each call printed and left."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    argv = (*SMALL, "--methods", *METHODS_RUN, "--profiles-root", str(profiles_root), "--out", str(out))
    calls = {"train": 0, "prune": 0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(METHODS, "broken", Method("broken", "always fails", NoOptions, _broken))
        real_train, real_prune = pipeline.train_zoo_model, pipeline.prune

        def counted(name, fn):
            def wrapper(*args, **kwargs):
                calls[name] += 1
                return fn(*args, **kwargs)
            return wrapper

        mp.setattr(pipeline, "train_zoo_model", counted("train", real_train))
        mp.setattr(pipeline, "prune", counted("prune", real_prune))

        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt

        mp.setattr(pipeline, "side_by_side", interrupt)
        first = call("pipeline", *argv)
        interrupted = stage_files(out)
        calls_first = dict(calls)
        mp.undo()  # the real side_by_side again; training and pruning still counted
        mp.setitem(METHODS, "broken", Method("broken", "always fails", NoOptions, _broken))
        mp.setattr(pipeline, "train_zoo_model", counted("train", real_train))
        mp.setattr(pipeline, "prune", counted("prune", real_prune))
        resumed = call("pipeline", *argv)
        calls_resumed = {k: calls[k] - calls_first[k] for k in calls}
        after = stage_files(out)

        def forbidden(*args, **kwargs):
            raise AssertionError("called on a rerun of a finished pipeline")

        for name in ("train_zoo_model", "prune", "side_by_side", "write_report", "profile_device"):
            mp.setattr(pipeline, name, forbidden)
        again = call("pipeline", *argv)
    return SimpleNamespace(out=out, argv=argv, first=first, interrupted=interrupted, calls_first=calls_first,
                           resumed=resumed, calls_resumed=calls_resumed, after=after, again=again,
                           again_files=stage_files(out))


def test_an_interrupted_run_resumes_from_the_next_unfinished_stage(finished):
    code, _out, err = finished.first
    assert code == 130 and "interrupted in stage report" in err
    assert list(finished.interrupted) == ["1-profile.json", "2-accuracy.json", "3-analyze.json", "4-train.json",
                                          "5-prune.json"]
    assert finished.calls_first == {"train": 1, "prune": len(METHODS_RUN)}
    code, out, err = finished.resumed
    assert code == 0, err
    assert finished.calls_resumed == {"train": 0, "prune": 0}  # stages 1-5 were not run again
    for n, name in enumerate(pipeline.STAGES[:5], 1):
        assert f"[{n}/6] {name}: done earlier" in out
        assert finished.after[f"{n}-{name}.json"] == finished.interrupted[f"{n}-{name}.json"]
    assert "[6/6] report: done in" in out
    assert json.loads(finished.after["6-report.json"][1])["succeeded"] == 2


def test_a_rerun_of_a_finished_run_skips_every_stage(finished):
    code, out, err = finished.again
    assert code == 0, err  # train_zoo_model, prune, side_by_side, write_report all raise if called
    assert finished.again_files == finished.after  # same contents, same modification times
    assert all(f"[{n}/6] {name}: done earlier" in out for n, name in enumerate(pipeline.STAGES, 1))
    table = json.loads(finished.after["6-report.json"][1])["table"]
    assert table in out  # the table is printed again from the record


def test_the_table_takes_latency_and_speed_up_from_the_side_by_side_measurement(finished):
    joint = json.loads((finished.out / "side_by_side.json").read_text())["networks"]
    assert set(joint) == {"uniform", "global"}
    rows = {r["method"]: r for r in json.loads(finished.after["6-report.json"][1])["rows"]}
    _, out, _ = finished.resumed
    for method, j in joint.items():
        assert len(j["all"]) == 2  # --repeats 2, one interleaved comparison each
        row = rows[method]
        assert row["speedup"] == pytest.approx(1 / j["median"])
        assert row["latency_us"] == j["median_us"]
        report = json.loads((finished.out / "prune" / method / "report.json").read_text())
        assert row["accuracy"] == report["accuracy"]["finetuned"]
        assert row["mflops"] == pytest.approx(report["flops"]["pruned"] / 1e6)
        assert row["params"] == report["params"]["pruned"]
        assert row["measurements"] == report["oracle"]["counts"]["measurements"] == 0  # --oracle predict
        line = next(ln for ln in out.splitlines() if ln.startswith(f"| {method} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"{j['median_us']:,.1f}" and cells[2] == f"{1 / j['median']:.2f}x"
        assert cells[3].startswith(f"{j['median']:.3f} ({j['low']:.3f}–{j['high']:.3f})")
    original = rows["original"]
    assert original["speedup"] == 1.0 and original["latency_us"] == joint["uniform"]["original_us"]
    assert original["accuracy"] == json.loads((finished.out / "train" / "train.json").read_text())["test_accuracy"]


def test_a_failing_method_is_a_row_of_the_table_and_the_others_go_on(finished):
    prune = json.loads(finished.after["5-prune.json"][1])
    assert [r["method"] for r in prune["runs"]] == list(METHODS_RUN)
    broken = next(r for r in prune["runs"] if r["method"] == "broken")
    assert broken["error"] == "RuntimeError: boom"
    assert "| broken | failed: RuntimeError: boom |" in (finished.out / "summary.md").read_text()
    assert (finished.out / "prune" / "global" / "report.json").is_file()  # pruned after the failure


def test_the_summary_page_embeds_the_pareto_plot_and_the_analysis_figures(finished):
    page = (finished.out / "summary.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert "pareto.png" in images and any(i.startswith("analysis/") for i in images)
    for image in images:
        assert (finished.out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
    analysis = json.loads(finished.after["3-analyze.json"][1])
    assert all(Path(f).is_file() for f in analysis["files"])
    staircase = (finished.out / "analysis" / "staircase.csv").read_text()
    assert "features.1.0" in staircase and "head" not in staircase  # the output layer's width is fixed
    profile = json.loads(finished.after["1-profile.json"][1])
    assert profile["source"] == "shipped" and Path(profile["profile"]).name == "match"


def test_a_rerun_with_other_settings_is_refused_before_any_work(finished, capsys, monkeypatch):
    monkeypatch.setitem(METHODS, "broken", Method("broken", "always fails", NoOptions, _broken))
    argv = [a if a != "0.7" else "0.6" for a in finished.argv]
    code, _out, err = run(capsys, "pipeline", *argv)
    assert_one_line_error(code, err, "target 0.7 -> 0.6", "another --out")
    assert stage_files(finished.out) == finished.again_files


@pytest.mark.parametrize(("extra", "needle"), [
    (("--methods", "uniform", "nosuch"), "unknown pruning method 'nosuch'"),
    (("--methods", "uniform", "uniform"), "names a method twice"),
    (("--target", "1"), "--target is a share of the original's latency in (0, 1), got 1"),
    (("--target", "0"), "--target: expected a number in (0, 1], got '0'"),
    (("--target", "1.5"), "--target: expected a number in (0, 1], got '1.5'"),
    (("--dataset", "cifar10", "--data", "{tmp}/no-such-folder"), "does not exist"),
    (("--out", "{tmp}/a-file/run"), "cannot write into"),
    (("--option", "lap.episodes=5"), "lap is not among --methods"),
    (("--option", "uniform.nosuch=1"), "uniform takes no option nosuch"),
    (("--weights", "{tmp}/none.pt"), "no such weights file"),
])
def test_bad_input_is_refused_in_one_line_before_anything_is_written(capsys, tmp_path, extra, needle):
    (tmp_path / "a-file").write_text("")
    extra = tuple(a.replace("{tmp}", str(tmp_path)) for a in extra)
    out = tmp_path / "out"
    code, _out, err = run(capsys, "pipeline", *SMALL, "--methods", "uniform", "--out", str(out), *extra)
    assert_one_line_error(code, err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no run folder, nothing else


def test_a_profile_is_chosen_only_on_a_strict_match(shipped_profile, tmp_path):
    here = DeviceProfile.load(shipped_profile(), check_fingerprint=False).current_fingerprint()
    major, minor, *_ = here["onnxruntime"].split(".")
    copies = {"a-other-cpu": {"cpu": "Some Other CPU"}, "b-two-threads": {"threads": 2}, "c-batch-8": {},
              "d-patch-release": {"onnxruntime": f"{major}.{minor}.999"}, "e-same": {}}
    for name, fields in copies.items():
        shutil.copytree(shipped_profile(**fields), tmp_path / name)
    meta = json.loads((tmp_path / "c-batch-8" / "profile.json").read_text())
    meta["settings"]["batch"] = 8
    (tmp_path / "c-batch-8" / "profile.json").write_text(json.dumps(meta))
    backend = require_backend("onnxruntime", threads=1, precision="fp32")

    found, passed = pipeline.find_profile(backend, 1, ["resnet56"], tmp_path)
    assert found is not None and found.path == tmp_path / "d-patch-release"  # a patch release is no mismatch
    assert [p.split(":")[0] for p in passed] == ["a-other-cpu", "b-two-threads", "c-batch-8"]
    assert "cpu: profile 'Some Other CPU'" in passed[0] and "threads: profile 2, here 1" in passed[1]
    assert passed[2].endswith("batch 8, here 1")

    found, passed = pipeline.find_profile(require_backend("onnxruntime", threads=2, precision="fp32"), 1,
                                          ["resnet56"], tmp_path)
    assert found.path == tmp_path / "b-two-threads"
    found, passed = pipeline.find_profile(backend, 4, ["resnet56"], tmp_path)
    assert found is None and len(passed) == len(copies)


def test_the_pipeline_options_reach_each_method():
    config = pipeline.PipelineConfig(episodes=12, options=("lap.warmup=2", "hilp.criterion=l2"))
    assert pipeline.method_options(config, "lap") == {"episodes": 12, "warmup": 2}
    assert pipeline.method_options(config, "hilp") == {**pipeline.HILP_SMALL, "criterion": "l2"}
    assert pipeline.method_options(config, "uniform") == {}


def test_with_no_profile_that_fits_the_device_is_profiled_into_the_run_folder(shipped_profile, tmp_path, monkeypatch):
    root = tmp_path / "profiles"
    shutil.copytree(shipped_profile(cpu="Some Other CPU"), root / "elsewhere")
    asked = []

    def fake_profile_device(settings, out, progress):  # a short profiling run, as the shipped profile
        asked.append((settings, Path(out), progress))
        shutil.copytree(shipped_profile(), out)
        return Path(out)

    monkeypatch.setattr(pipeline, "profile_device", fake_profile_device)
    config = pipeline.check(pipeline.PipelineConfig(out=str(tmp_path / "run"), profiles_root=str(root),
                                                    profile_minutes=2.5, quiet=True))
    lines = []
    record = pipeline.stage_profile(pipeline.Run(config, lines.append, {}))
    (settings, out, progress), = asked
    assert out == tmp_path / "run" / "profile" and progress is False
    assert settings.families == ["resnet56", "resnet20"]  # --analyze-model and --model
    assert (settings.backend, settings.threads, settings.precision, settings.batch, settings.budget_min) == \
        ("onnxruntime", 1, "fp32", 1, 2.5)
    assert record["source"] == "profiled" and record["anchoring"] is None  # measured now: nothing to re-anchor
    assert record["passed_over"] == [next(ln for ln in lines if "elsewhere" in ln).strip()[len("passed over "):]]
    assert "cpu: profile 'Some Other CPU'" in record["passed_over"][0]


def test_a_profile_given_is_used_as_it_is_warned_about_and_re_anchored(shipped_profile, tmp_path, monkeypatch,
                                                                        capsys):
    given = shipped_profile(cpu="Some Other CPU")  # would be passed over if searched for
    reanchored = []

    def fake_reanchor(profile, seconds, progress):
        reanchored.append((profile.path, seconds, progress))
        return SimpleNamespace(factor=1.7, to_dict=lambda: {"factor": 1.7})

    def no_search(*args, **kwargs):
        raise AssertionError("a given profile is not searched for")

    monkeypatch.setattr(pipeline, "reanchor_profile", fake_reanchor)
    monkeypatch.setattr(pipeline, "find_profile", no_search)
    monkeypatch.setattr(pipeline, "profile_device", no_search)
    config = pipeline.check(pipeline.PipelineConfig(out=str(tmp_path / "run"), profile=str(given),
                                                    reanchor_seconds=3.0, quiet=True))
    lines = []
    record = pipeline.stage_profile(pipeline.Run(config, lines.append, {}))
    assert (record["source"], Path(record["profile"]), record["passed_over"]) == ("given", given, [])
    assert reanchored == [(given, 3.0, False)] and record["anchor_factor"] == 1.7
    assert any("anchor factor 1.70x" in ln for ln in lines)
    err = capsys.readouterr().err
    assert err.count("latbench: warning:") == 1 and "Some Other CPU" in err  # warned once, naming the mismatch
