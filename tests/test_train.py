"""Training on scikit-learn digits: it learns, it is deterministic, it resumes exactly, bad weights are refused."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from latbench.models import build_model
from latbench.models.small import SmallConvNet
from pruners.data import digits, loaders
from pruners.errors import CheckpointError
from pruners.train import CHECKPOINT, TrainConfig, _loss, evaluate, fit, load_weights, read_weights

BATCH = 32
QUICK = TrainConfig(epochs=2, lr=0.1, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def splits():
    return digits(seed=0)


def fresh(splits, seed: int = 0):
    """Loaders over a copy of the splits: a new process would see fresh augmentation and shuffling generators."""
    return loaders(copy.deepcopy(splits), BATCH, seed)


def fresh_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("smallconv")


def run(splits, config: TrainConfig, **kw):
    model = fresh_model(config.seed)
    train, val, test = fresh(splits, config.seed)
    history = fit(model, train, val, config, progress=False, **kw)
    return model, history, test


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


class Stop(Exception):
    pass


def stop_after(epoch: int):
    def callback(done: int, model) -> None:
        if done == epoch:
            raise Stop(f"interrupted after epoch {done}")
    return callback


def test_fit_learns_digits(splits):
    model = fresh_model()
    train, val, test = fresh(splits)
    before = evaluate(model, test)
    history = fit(model, train, val, TrainConfig(epochs=3, lr=0.1), progress=False)
    after = evaluate(model, test)
    assert after > 50.0, f"test accuracy {after:.1f}% after 3 epochs"
    assert after > before + 20.0
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    assert history.last_val == history.epochs[-1]["val_acc"] > 30.0
    assert not model.training


def test_same_seed_same_weights(splits):
    a, ha, _ = run(splits, QUICK)
    b, hb, _ = run(splits, QUICK)
    assert_same_weights(a, b)
    assert [e["train_loss"] for e in ha.epochs] == [e["train_loss"] for e in hb.epochs]
    # and the comparison can fail: another seed gives other weights
    c, _, _ = run(splits, TrainConfig(epochs=1, lr=0.1, seed=1))
    assert not torch.equal(a.state_dict()["features.0.0.weight"], c.state_dict()["features.0.0.weight"])


def test_interrupted_run_resumes_bit_identically(splits, tmp_path):
    full, full_history, _ = run(splits, QUICK)

    with pytest.raises(Stop):
        run(splits, QUICK, checkpoint_dir=tmp_path, on_epoch_end=[stop_after(1)])
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 1  # saved before the callback ran

    seen = []
    resumed, history, _ = run(splits, QUICK, checkpoint_dir=tmp_path, on_epoch_end=[lambda e, m: seen.append(e)])
    assert seen == [2]  # only the missing epoch was trained
    assert_same_weights(resumed, full)
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    for got, want in zip(history.epochs, full_history.epochs, strict=True):
        assert (got["train_loss"], got["val_acc"], got["lr"]) == (want["train_loss"], want["val_acc"], want["lr"])

    # a finished checkpoint: nothing left to train, the weights are loaded into a fresh model
    seen.clear()
    done, _, _ = run(splits, QUICK, checkpoint_dir=tmp_path, on_epoch_end=[lambda e, m: seen.append(e)])
    assert seen == []
    assert_same_weights(done, full)


def test_checkpoint_with_other_settings_is_refused(splits, tmp_path):
    one = TrainConfig(epochs=1, lr=0.1)
    run(splits, one, checkpoint_dir=tmp_path)
    for other, field in ((TrainConfig(epochs=1, lr=0.05), "lr"), (TrainConfig(epochs=3, lr=0.1), "epochs"),
                         (TrainConfig(epochs=1, lr=0.1, seed=4), "seed")):
        model = fresh_model()
        train, val, _ = fresh(splits)
        with pytest.raises(CheckpointError, match=f"other settings \\({field}\\)"):
            fit(model, train, val, other, checkpoint_dir=tmp_path, progress=False)


def test_corrupt_checkpoint_is_refused(splits, tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint at all")
    model = fresh_model()
    train, val, _ = fresh(splits)
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        fit(model, train, val, QUICK, checkpoint_dir=tmp_path, progress=False)
    assert "\n" not in str(info.value)


def test_load_weights_from_another_model_is_refused():
    model = build_model("smallconv")
    with pytest.raises(CheckpointError, match=r"missing features\.0\.0\.weight"):
        load_weights(model, build_model("resnet20").state_dict(), "resnet20.pt")
    narrow = SmallConvNet(width=8).state_dict()
    with pytest.raises(CheckpointError, match=r"features\.0\.0\.weight is \[8, 3, 3, 3\] in the file, "
                                              r"\[16, 3, 3, 3\] in the model"):
        load_weights(model, narrow, "narrow.pt")
    extra = {**model.state_dict(), "head.extra": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected head\.extra"):
        load_weights(model, extra, "extra.pt")
    # a matching state dict loads
    other = fresh_model(5)
    load_weights(model, other.state_dict(), "other.pt")
    assert_same_weights(model, other)


class NotWeights:
    """Something that is not a tensor: ``weights_only`` loading must refuse to unpickle it."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def test_read_weights(tmp_path):
    model = fresh_model(2)
    good = tmp_path / "weights.pt"
    torch.save(model.state_dict(), good)
    state = read_weights(good)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "model": model.state_dict(), "config": {"lr": 0.1}}, ckpt)
    assert read_weights(ckpt).keys() == model.state_dict().keys()

    pickled = tmp_path / "object.pt"
    torch.save(NotWeights(), pickled)
    with pytest.raises(CheckpointError, match="cannot read weights") as info:
        read_weights(pickled)
    assert "\n" not in str(info.value)

    mixed = tmp_path / "mixed.pt"
    torch.save({"a": torch.zeros(2), "b": 3}, mixed)
    with pytest.raises(CheckpointError, match="not a state dict of tensors"):
        read_weights(mixed)

    with pytest.raises(CheckpointError, match="no weights file"):
        read_weights(tmp_path / "missing.pt")


def test_distillation_needs_a_teacher(splits):
    model = fresh_model()
    train, val, _ = fresh(splits)
    with pytest.raises(CheckpointError, match="needs a teacher"):
        fit(model, train, val, TrainConfig(epochs=1, distill=0.5), progress=False)


def test_distillation_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 10, generator=g)
    teacher = torch.randn(8, 10, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    ce = F.cross_entropy(logits, y)
    # no teacher, or distillation off: plain cross-entropy
    assert torch.equal(_loss(logits, y, None, TrainConfig(distill=0.5)), ce)
    assert torch.equal(_loss(logits, y, teacher, TrainConfig(distill=0.0)), ce)
    # all distillation, the teacher agrees with the student: nothing to learn
    assert _loss(logits, y, logits.clone(), TrainConfig(distill=1.0)).abs().item() < 1e-6
    # the mix, by hand: (1 - a) CE + a T^2 KL(softmax(t/T) || softmax(s/T)), batch mean
    a, t = 0.3, 2.0
    p = F.softmax(teacher / t, 1)
    kl = (p * (p.log() - F.log_softmax(logits / t, 1))).sum(1).mean()
    want = (1 - a) * ce + a * t * t * kl
    got = _loss(logits, y, teacher, TrainConfig(distill=a, temperature=t))
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, ce)


def test_distillation_with_a_teacher_trains_toward_it(splits):
    teacher = fresh_model(9).eval()
    frozen = copy.deepcopy(teacher.state_dict())
    config = TrainConfig(epochs=1, lr=0.1, distill=0.9)
    student, history, _ = run(splits, config, teacher=teacher)
    plain, _, _ = run(splits, TrainConfig(epochs=1, lr=0.1))
    assert len(history.epochs) == 1
    # the teacher is only read, and its logits change the student's training
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training
    assert not torch.equal(student.state_dict()["head.weight"], plain.state_dict()["head.weight"])
