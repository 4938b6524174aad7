"""Dataset helpers: digits, a fake local CIFAR-10 in both formats, an image folder, and the dispatcher."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pruners.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    DATASETS,
    TensorImages,
    cifar10,
    digits,
    image_folder,
    load_dataset,
    loaders,
)
from pruners.errors import DatasetError


@pytest.fixture(scope="module")
def dig():
    return digits(seed=0)


# ------------------------------------------------------------------------------------------------------------ digits


def test_digits_shapes_and_sizes(dig):
    assert dig.num_classes == 10 and dig.input_shape == (3, 32, 32) and dig.name == "digits"
    assert len(dig.train) + len(dig.val) + len(dig.test) == 1797
    assert abs(len(dig.val) - 0.2 * 1797) <= 1 and abs(len(dig.test) - 0.2 * 1797) <= 1
    for ds in (dig.train, dig.val, dig.test):
        x, y = ds[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert isinstance(y, int) and 0 <= y < 10
    # stratified: every class in every split
    for ds in (dig.train, dig.val, dig.test):
        assert set(ds.labels.tolist()) == set(range(10))


def test_digits_deterministic(dig):
    again = digits(seed=0)
    for a, b in ((dig.train, again.train), (dig.val, again.val), (dig.test, again.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(digits(seed=0).train[0][0], again.train[0][0])  # same augmentation stream
    assert torch.equal(dig.val[0][0], again.val[0][0])
    other = digits(seed=1)
    assert not torch.equal(other.test.images, dig.test.images)


def test_digits_train_normalised(dig):
    plain = TensorImages(dig.train.images, dig.train.labels, dig.mean, dig.std)
    x = torch.stack([plain[i][0] for i in range(len(plain))])
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_digits_augmentation(dig):
    assert torch.equal(dig.val[3][0], dig.val[3][0]) and torch.equal(dig.test[5][0], dig.test[5][0])
    plain = TensorImages(dig.train.images, dig.train.labels, dig.mean, dig.std)[0][0]
    augmented = [dig.train[0][0] for _ in range(10)]
    assert all(a.shape == (3, 32, 32) for a in augmented)
    assert any(not torch.equal(a, plain) for a in augmented)
    # no horizontal flip for digits: a crop offset never mirrors, so the flipped image is never produced
    assert not any(torch.equal(a, plain.flip(-1)) for a in augmented)


def test_loaders(dig):
    train, val, test = loaders(dig, batch_size=100, seed=3)
    xb, yb = next(iter(train))
    assert xb.shape == (100, 3, 32, 32) and yb.shape == (100,)
    first = next(iter(loaders(dig, batch_size=100, seed=3)[0]))[1]
    assert torch.equal(first, next(iter(loaders(dig, batch_size=100, seed=3)[0]))[1])
    assert torch.equal(next(iter(val))[1], dig.val.labels[:100])
    assert sum(len(b[1]) for b in test) == len(dig.test)


# ---------------------------------------------------------------------------------------------------------- CIFAR-10

N = 20  # records per fake batch file


def _fake_batches(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(N, 3072), dtype=np.uint8)
        labels = (np.arange(N) + k) % 10
        out[name] = (data, labels)
    return out


def _write_binary(folder: Path, batches) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def _write_python(folder: Path, batches) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        with (folder / name).open("wb") as f:
            pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels.tolist()}, f, protocol=2)


def _check_roundtrip(splits, batches) -> None:
    assert splits.num_classes == 10 and splits.input_shape == (3, 32, 32) and splits.name == "cifar10"
    assert len(splits.train) + len(splits.val) == 5 * N and len(splits.test) == N
    data, labels = batches["test_batch"]
    assert splits.test.labels.tolist() == labels.tolist()
    assert torch.equal(splits.test.images, torch.from_numpy(data.reshape(-1, 3, 32, 32)))
    x, y = splits.test[7]
    assert y == labels[7]
    mean, std = torch.tensor(CIFAR_MEAN).view(3, 1, 1), torch.tensor(CIFAR_STD).view(3, 1, 1)
    pixels = torch.round((x * std + mean) * 255).to(torch.uint8)
    assert torch.equal(pixels, torch.from_numpy(data[7].reshape(3, 32, 32)))
    # train + val are exactly the training records
    train_data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    got = torch.cat([splits.train.images, splits.val.images]).reshape(5 * N, -1)
    assert sorted(map(bytes, got.numpy())) == sorted(map(bytes, train_data.reshape(5 * N, -1)))
    xt, _ = splits.train[0]
    assert xt.shape == (3, 32, 32)


@pytest.mark.parametrize("sub", ["", "cifar-10-batches-bin"])
def test_cifar_binary(tmp_path, sub):
    batches = _fake_batches()
    _write_binary(tmp_path / sub, batches)
    splits = cifar10(tmp_path, val_fraction=0.1)
    assert len(splits.val) == 10 and sorted(splits.val.labels.tolist()) == list(range(10))  # stratified
    _check_roundtrip(splits, batches)


@pytest.mark.parametrize("sub", ["", "cifar-10-batches-py"])
def test_cifar_python(tmp_path, sub):
    batches = _fake_batches(1)
    _write_python(tmp_path / sub, batches)
    _check_roundtrip(cifar10(tmp_path, val_fraction=0.0), batches)
    assert len(cifar10(tmp_path, val_fraction=0.0).val) == 0


def test_cifar_missing_file(tmp_path):
    _write_binary(tmp_path, _fake_batches())
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(DatasetError, match="test_batch") as e:
        cifar10(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DatasetError, match="data_batch_1"):
        cifar10(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no CIFAR-10 files"):
        cifar10(tmp_path / "empty")


def test_cifar_truncated(tmp_path):
    _write_binary(tmp_path, _fake_batches())
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin"):
        cifar10(tmp_path)


def test_cifar_python_corrupt(tmp_path):
    _write_python(tmp_path, _fake_batches())
    path = tmp_path / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match="data_batch_2"):
        cifar10(tmp_path)


def test_cifar_python_wrong_shape(tmp_path):
    _write_python(tmp_path, _fake_batches())
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"test_batch.*N×3072"):
        cifar10(tmp_path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_python_refuses_malicious_pickle(tmp_path):
    _write_python(tmp_path, _fake_batches())
    marker = tmp_path / "pwned"
    with (tmp_path / "data_batch_1").open("wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"data_batch_1.*system"):
        cifar10(tmp_path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------------ image folder


def _png(path: Path, color: tuple[int, int, int], size=(40, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder(tmp_path):
    colors = {"cat": (255, 0, 0), "dog": (0, 0, 255)}
    for split, n in (("train", 3), ("val", 1)):
        for cls, color in colors.items():
            for i in range(n):
                _png(tmp_path / split / cls / f"{i}.png", color, size=(40 + 7 * i, 30))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    s = image_folder(tmp_path, size=32)
    assert s.classes == ("cat", "dog") and s.num_classes == 2 and s.input_shape == (3, 32, 32)
    assert len(s.train) == 6 and len(s.val) == 2 and s.test is s.val
    x, y = s.val[1]
    assert x.shape == (3, 32, 32) and y == 1
    mean, std = torch.tensor(s.mean).view(3, 1, 1), torch.tensor(s.std).view(3, 1, 1)
    rgb = (x * std + mean)[:, 16, 16]
    assert torch.allclose(rgb, torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)  # blue dog, label 1
    labels = sorted(s.train[i][1] for i in range(len(s.train)))
    assert labels == [0, 0, 0, 1, 1, 1]
    assert all(s.train[i][0].shape == (3, 32, 32) for i in range(len(s.train)))


def test_image_folder_errors(tmp_path):
    _png(tmp_path / "val" / "cat" / "0.png", (1, 2, 3))
    with pytest.raises(DatasetError, match="train"):
        image_folder(tmp_path, size=32)
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="no class"):
        image_folder(tmp_path, size=32)
    _png(tmp_path / "train" / "dog" / "0.png", (1, 2, 3))
    with pytest.raises(DatasetError, match="cat"):
        image_folder(tmp_path, size=32)


# ---------------------------------------------------------------------------------------------------------- dispatch


def test_load_dataset(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist")
    assert all(name in str(e.value) for name in DATASETS)
    with pytest.raises(DatasetError, match="root"):
        load_dataset("cifar10")
    _write_binary(tmp_path, _fake_batches())
    assert load_dataset("cifar10", root=tmp_path).name == "cifar10"
