"""Datasets for pruning and fine-tuning, read only from local files: nothing is ever downloaded.

* ``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes), upsampled to ``size``×``size``
  and replicated to 3 channels; a stratified, seeded train/val/test split. Always available, good for fast tests.
* ``cifar10``: CIFAR-10 from a local folder, either the binary version (``data_batch_1.bin`` … ``test_batch.bin``)
  or the Python version (``data_batch_1`` … ``test_batch``, pickles read with a restricted unpickler that only
  rebuilds numpy arrays), optionally inside ``cifar-10-batches-bin`` / ``cifar-10-batches-py``.
* ``imagefolder``: an ImageNet-style tree ``root/{train,val[,test]}/<class>/*.jpg|jpeg|png`` decoded lazily with PIL.

Every dataset yields ``(float tensor C×H×W, int label)``, normalised per channel. Training augmentation (random crop
with zero padding, optional horizontal flip) is done in torch with a per-dataset seeded ``torch.Generator``, so runs
are reproducible. Problems with the files raise :class:`pruners.errors.DatasetError` with a one-line message.
"""

from __future__ import annotations

import _codecs
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, get_worker_info

from pruners.errors import DatasetError

DATASETS = ("digits", "cifar10", "imagefolder")

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

Stats = tuple[float, ...]


@dataclass
class Splits:
    """Train/val/test datasets of one task plus what a model needs to know about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    name: str
    mean: Stats
    std: Stats
    classes: tuple[str, ...] = ()


class _Seeded:
    """Lazily created augmentation generator: seeded per dataset, and per worker process inside a DataLoader."""

    seed: int
    _gen: torch.Generator | None = None
    _gen_worker: int | None = None

    def _generator(self) -> torch.Generator:
        info = get_worker_info()
        worker = None if info is None else info.id
        if self._gen is None or self._gen_worker != worker:
            # In a worker, mix in the worker's seed (derived from the loader's seeded generator, new every epoch).
            seed = self.seed if info is None else (self.seed * 1_000_003 + info.seed) % 2**63
            self._gen = torch.Generator().manual_seed(seed)
            self._gen_worker = worker
        return self._gen

    @property
    def generator(self) -> torch.Generator:
        """The augmentation generator of this process (a training run saves and restores its state)."""
        return self._generator()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_gen", None)
        state.pop("_gen_worker", None)
        return state

    def _flip(self, img: torch.Tensor) -> torch.Tensor:
        return img.flip(-1) if bool(torch.rand(1, generator=self._generator()) < 0.5) else img


class TensorImages(_Seeded, Dataset):
    """In-memory images N×C×H×W (uint8 0..255 or float 0..1) with labels, normalised per channel.

    With ``train=True`` each item is randomly cropped back to H×W after zero-padding by ``pad`` pixels and, when
    ``flip`` is set, mirrored left-right with probability 0.5. ``images`` keeps the raw, un-normalised data.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        mean: Stats,
        std: Stats,
        train: bool = False,
        pad: int = 0,
        flip: bool = False,
        seed: int = 0,
    ) -> None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise DatasetError(f"images must be N×C×H×W with one label each, got {tuple(images.shape)} and "
                               f"{labels.shape[0]} labels")
        self.images, self.labels = images, labels
        self.mean, self.std = tuple(mean), tuple(std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        self.train, self.pad, self.flip, self.seed = train, pad, flip, seed

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def raw(self, index: int) -> torch.Tensor:
        """Un-normalised, un-augmented image ``index`` as float in [0, 1]."""
        img = self.images[index]
        return img.float() / 255.0 if img.dtype == torch.uint8 else img.float()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.raw(index)
        if self.train:
            if self.pad > 0:
                h, w = img.shape[-2:]
                img = F.pad(img, (self.pad, self.pad, self.pad, self.pad))
                i, j = torch.randint(0, 2 * self.pad + 1, (2,), generator=self._generator()).tolist()
                img = img[:, i : i + h, j : j + w]
            if self.flip:
                img = self._flip(img)
        return (img - self._mean) / self._std, int(self.labels[index])


def _split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with ``fraction`` held out, stratified by label when possible, seeded."""
    index = np.arange(len(labels))
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"split fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0 or len(labels) == 0:
        return index, index[:0]
    try:
        kept, held = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:  # too few images per class to stratify (tiny folders): plain seeded split
        kept, held = train_test_split(index, test_size=fraction, random_state=seed)
    return np.sort(kept), np.sort(held)


def digits(seed: int = 0, size: int = 32, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Splits:
    """scikit-learn's 8×8 digits upsampled to ``size``, 3 channels, stratified seeded train/val/test split."""
    bunch = load_digits()
    labels = np.asarray(bunch.target, dtype=np.int64)
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    x = x.expand(-1, 3, -1, -1).contiguous()
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}")
    rest, test_idx = _split(labels, test_fraction, seed)
    keep, val_idx = _split(labels[rest], val_fraction / (1.0 - test_fraction), seed)
    train_idx, val_idx = rest[keep], rest[val_idx]
    train_x = x[train_idx]
    mean = tuple(float(v) for v in train_x.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in train_x.std(dim=(0, 2, 3)))
    y = torch.as_tensor(labels)

    def part(idx: np.ndarray, train: bool = False) -> TensorImages:
        return TensorImages(x[idx], y[idx], mean, std, train=train, pad=2 if train else 0, flip=False, seed=seed)

    return Splits(part(train_idx, True), part(val_idx), part(test_idx), 10, (3, size, size), "digits", mean, std,
                  tuple(str(i) for i in range(10)))


# --------------------------------------------------------------------------------------------------------- CIFAR-10

_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_LAYOUTS = {  # layout -> (subfolder, file suffix)
    "binary": ("cifar-10-batches-bin", ".bin"),
    "python": ("cifar-10-batches-py", ""),
}
_CIFAR_HELP = (
    "expected the binary version (data_batch_1.bin … data_batch_5.bin, test_batch.bin) or the Python version "
    "(data_batch_1 … data_batch_5, test_batch), directly in the folder or in a cifar-10-batches-bin / "
    "cifar-10-batches-py subfolder; nothing is downloaded"
)


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's ndarray rebuild function, whatever module it lives in
_PICKLE_GLOBALS = {  # the only globals a pickled CIFAR-10 batch (dict of numpy arrays and lists) may name
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and refuses every other global."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(f"refusing to load {self.path}: the pickle references {module}.{name}, which is not "
                               "part of a CIFAR-10 batch (only numpy arrays are allowed)") from None

    def persistent_load(self, pid: object) -> object:
        raise DatasetError(f"refusing to load {self.path}: the pickle uses persistent ids, which CIFAR-10 never does")


def _read_cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError as e:
        raise DatasetError(f"cannot read CIFAR-10 file {path}: {e.strerror or e}") from None
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise DatasetError(f"CIFAR-10 file {path} is truncated or corrupt: {raw.size} bytes is not a whole number "
                           f"of {_CIFAR_RECORD}-byte records")
    records = raw.reshape(-1, _CIFAR_RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _read_cifar_python(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _NumpyOnlyUnpickler(f, path).load()
    except DatasetError:
        raise
    except OSError as e:
        raise DatasetError(f"cannot read CIFAR-10 file {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - any failure inside a corrupt pickle becomes one line naming the file
        raise DatasetError(f"CIFAR-10 file {path} is truncated or corrupt ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"CIFAR-10 file {path} is not a CIFAR-10 batch (a pickled dict)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"CIFAR-10 file {path}: 'data' must be a uint8 array N×3072, got {got}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DatasetError(f"CIFAR-10 file {path}: 'labels' is missing or not a list of integers") from None
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(f"CIFAR-10 file {path}: {data.shape[0]} images but {labels.shape[0]} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _find_cifar(root: Path) -> tuple[Path, str]:
    """The folder and layout ("binary" or "python") holding a complete CIFAR-10, or a DatasetError."""
    if not root.is_dir():
        raise DatasetError(f"CIFAR-10 folder {root} does not exist; {_CIFAR_HELP}")
    best: tuple[int, Path, list[str]] | None = None
    for layout, (sub, suffix) in _CIFAR_LAYOUTS.items():
        for folder in (root, root / sub):
            names = [n + suffix for n in (*_CIFAR_TRAIN, "test_batch")]
            missing = [n for n in names if not (folder / n).is_file()]
            if not missing:
                return folder, layout
            if best is None or len(missing) < best[0]:
                best = (len(missing), folder, missing)
    assert best is not None
    n, folder, missing = best
    if n == len(_CIFAR_TRAIN) + 1:
        raise DatasetError(f"no CIFAR-10 files found in {root}; {_CIFAR_HELP}")
    raise DatasetError(f"incomplete CIFAR-10 in {folder}: missing {', '.join(missing)}; {_CIFAR_HELP}")


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"CIFAR-10 file {path} is corrupt: labels outside 0..9")


def cifar10(root: str | Path, seed: int = 0, val_fraction: float = 0.1) -> Splits:
    """CIFAR-10 from a local folder (binary or Python version); val is a stratified, seeded part of train."""
    folder, layout = _find_cifar(Path(root))
    suffix = _CIFAR_LAYOUTS[layout][1]
    read = _read_cifar_binary if layout == "binary" else _read_cifar_python
    xs, ys = [], []
    for name in _CIFAR_TRAIN:
        x, y = read(folder / (name + suffix))
        _check_labels(y, folder / (name + suffix))
        xs.append(x)
        ys.append(y)
    test_x, test_y = read(folder / ("test_batch" + suffix))
    _check_labels(test_y, folder / ("test_batch" + suffix))
    x, y = torch.from_numpy(np.concatenate(xs)), np.concatenate(ys)
    train_idx, val_idx = _split(y, val_fraction, seed)
    yt = torch.from_numpy(y)
    m, s = CIFAR_MEAN, CIFAR_STD
    return Splits(
        train=TensorImages(x[train_idx], yt[train_idx], m, s, train=True, pad=4, flip=True, seed=seed),
        val=TensorImages(x[val_idx], yt[val_idx], m, s, seed=seed),
        test=TensorImages(torch.from_numpy(test_x.copy()), torch.from_numpy(test_y), m, s, seed=seed),
        num_classes=10, input_shape=(3, 32, 32), name="cifar10", mean=m, std=s, classes=_CIFAR_CLASSES,
    )


# ----------------------------------------------------------------------------------------------------- image folder

_FOLDER_HELP = "expected root/train/<class>/*.jpg|jpeg|png and root/val/<class>/... (optionally root/test/<class>/...)"


class FolderImages(_Seeded, Dataset):
    """Image files decoded lazily with PIL: eval resizes the shorter side to size·256/224 and centre-crops ``size``;
    train resizes the shorter side to ``size``, random-crops ``size``×``size`` and flips at random."""

    def __init__(self, samples: list[tuple[Path, int]], size: int, mean: Stats, std: Stats, train: bool = False,
                 seed: int = 0) -> None:
        self.samples, self.size, self.train, self.seed = samples, size, train, seed
        self.mean, self.std = tuple(mean), tuple(std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DatasetError(f"cannot decode image {path}: {e}") from None
        short = self.size if self.train else round(self.size * 256 / 224)
        w, h = img.size
        scale = short / min(w, h)
        nw, nh = max(short, round(w * scale)), max(short, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        if self.train:
            g = self._generator()
            i = int(torch.randint(0, nh - self.size + 1, (1,), generator=g))
            j = int(torch.randint(0, nw - self.size + 1, (1,), generator=g))
            t = self._flip(t[:, i : i + self.size, j : j + self.size])
        else:
            i, j = (nh - self.size) // 2, (nw - self.size) // 2
            t = t[:, i : i + self.size, j : j + self.size]
        return (t - self._mean) / self._std, label


def _scan(split_dir: Path) -> dict[str, list[Path]]:
    return {
        d.name: sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        for d in sorted(split_dir.iterdir())
        if d.is_dir()
    }


def image_folder(root: str | Path, size: int = 224, seed: int = 0) -> Splits:
    """An ImageNet-style folder tree; classes are the sorted train subfolders; test falls back to val."""
    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DatasetError(f"image folder {root} has no {split}/ folder; {_FOLDER_HELP}")
    found = {split: _scan(root / split) for split in ("train", "val", "test") if (root / split).is_dir()}
    classes = tuple(found["train"])
    if not classes:
        raise DatasetError(f"image folder {root / 'train'} has no class subfolders; {_FOLDER_HELP}")
    index = {c: i for i, c in enumerate(classes)}
    parts: dict[str, FolderImages] = {}
    for split, per_class in found.items():
        extra = sorted(set(per_class) - set(classes))
        if extra:
            raise DatasetError(f"{root / split} has classes missing from {root / 'train'}: {', '.join(extra)}")
        samples = [(p, index[c]) for c, files in per_class.items() for p in files]
        if not samples:
            raise DatasetError(f"{root / split} holds no .jpg/.jpeg/.png images; {_FOLDER_HELP}")
        parts[split] = FolderImages(samples, size, IMAGENET_MEAN, IMAGENET_STD, train=split == "train", seed=seed)
    return Splits(parts["train"], parts["val"], parts.get("test", parts["val"]), len(classes), (3, size, size),
                  "imagefolder", IMAGENET_MEAN, IMAGENET_STD, classes)


# ---------------------------------------------------------------------------------------------------------- dispatch


def load_dataset(name: str, root: str | Path | None = None, seed: int = 0) -> Splits:
    """Load one of :data:`DATASETS` by name; ``cifar10`` and ``imagefolder`` need a local ``root`` folder."""
    key = name.strip().lower()
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if key == "digits":
        return digits(seed=seed)
    if root is None:
        raise DatasetError(f"dataset {key!r} needs a local folder (root); nothing is downloaded")
    return cifar10(root, seed=seed) if key == "cifar10" else image_folder(root, seed=seed)


def loaders(splits: Splits, batch_size: int = 64, seed: int = 0,
            workers: int = 0) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) loaders: train shuffled by a seeded generator, val/test in order; last batch kept."""
    kw = {"batch_size": batch_size, "num_workers": workers, "drop_last": False}
    train = DataLoader(splits.train, shuffle=True, generator=torch.Generator().manual_seed(seed), **kw)
    return train, DataLoader(splits.val, shuffle=False, **kw), DataLoader(splits.test, shuffle=False, **kw)
