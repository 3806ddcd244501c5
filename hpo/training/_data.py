"""Datasets held in memory as uint8 tensors, split into train / validation (/ test).

Every dataset here fits in memory, so each is loaded once per process into one uint8 tensor
(N, C, H, W); batching, shuffling and augmentation then run batched on the training device (see
:mod:`hpo.training._loader`). The validation split is carved from the training split with a
fixed seed; the test split is loaded only on request and never by a study.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpo.checks import AT_LEAST_ONE, NON_NEGATIVE, Rule
from hpo.config import DataConfig
from hpo.errors import UserError
from hpo.training._imported import is_import_path, resolve
from hpo.training._tables import lookup


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x C x H x W), labels (int64) and each image's index in its source."""

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor

    def take(self, idx: torch.Tensor) -> Split:
        return Split(self.images[idx], self.labels[idx], self.index[idx])

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Data:
    """The splits a run sees, with per-channel mean and std of the training split (0..1 units)."""

    train: Split
    val: Split
    test: Split | None
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])


# A source returns (training pool, test split or None when only the pool is asked for).
Source = Callable[[DataConfig, bool], tuple[Split, Split | None, int]]

# Fixed, independent of data.split_seed: the held-out test split must be the same in every study.
_TEST_SEED = 20160101
SYNTHETIC_DEFAULTS = {
    "channels": 3, "size": 32, "classes": 10, "train_size": 2000, "test_size": 500, "seed": 0,
}


def _split(pool: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(kept, held out): a seeded random ``fraction`` of ``pool`` is held out."""
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    n_held = max(1, round(fraction * len(pool)))
    return pool.take(order[n_held:].sort().values), pool.take(order[:n_held].sort().values)


def _from_numpy(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.as_tensor(labels, dtype=torch.int64),
        torch.arange(len(labels)),
    )


def _digits(cfg: DataConfig, with_test: bool) -> tuple[Split, Split | None, int]:
    # scikit-learn's 8x8 handwritten digits (1797 images, values 0..16): real data, no download.
    # Read from the file scikit-learn ships, as its load_digits reads it (64 pixel columns and
    # the label), without importing scikit-learn: that import costs every worker process about
    # two seconds of start-up.
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("data.name = \"digits\": scikit-learn is not installed (pip install "
                        "scikit-learn); it ships the digits")
    table = np.loadtxt(Path(spec.submodule_search_locations[0], "datasets", "data",
                            "digits.csv.gz"), delimiter=",")
    pixels, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    images = np.clip(np.round(pixels * (255 / 16)), 0, 255).astype(np.uint8)[:, None]
    pool, test = _split(_from_numpy(images, labels), 0.2, _TEST_SEED)
    return pool, test if with_test else None, 10


def _synthetic(cfg: DataConfig, with_test: bool) -> tuple[Split, Split | None, int]:
    # Seeded class prototypes plus noise: learnable, any shape, instant; for tests and benchmarks.
    o = {**SYNTHETIC_DEFAULTS, **cfg.options}
    g = torch.Generator().manual_seed(int(o["seed"]))
    shape = (int(o["channels"]), int(o["size"]), int(o["size"]))
    classes = int(o["classes"])
    prototypes = torch.rand((classes, *shape), generator=g) * 255

    def make(n: int) -> Split:
        labels = torch.randint(0, classes, (n,), generator=g)
        noise = torch.randn((n, *shape), generator=g) * 60
        images = (prototypes[labels] + noise).clamp(0, 255).to(torch.uint8)
        return Split(images, labels, torch.arange(n))

    pool = make(int(o["train_size"]))
    test = make(int(o["test_size"]))
    return pool, test if with_test else None, classes


_CIFAR_LAYOUT = {
    # name: (folder, training files, test file, label key, classes)
    "cifar10": (
        "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
        "labels", 10,
    ),
    "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels", 100),
}


def _cifar(cfg: DataConfig, with_test: bool) -> tuple[Split, Split | None, int]:
    """CIFAR-10/100 in the python-pickle layout that torchvision downloads and extracts."""
    folder, train_files, test_file, label_key, classes = _CIFAR_LAYOUT[cfg.name]
    root = Path(cfg.root or "data")
    base = root / folder
    if not (base / train_files[0]).exists():
        if not cfg.download:
            raise UserError(
                f"data.root: {cfg.name} not found at {base}; set data.download = true "
                "or extract the python version of the dataset there"
            )
        import torchvision

        datasets = torchvision.datasets
        cls = datasets.CIFAR10 if cfg.name == "cifar10" else datasets.CIFAR100
        try:
            cls(str(root), train=True, download=True)
        except Exception as e:  # network errors come in many types; all mean the same here
            raise UserError(f"data.download: could not download {cfg.name} into {root} "
                            f"({e}); download it elsewhere and extract its python version "
                            f"under {base}, or check the network") from None

    def read(files: list[str]) -> Split:
        images, labels = [], []
        for name in files:
            with open(base / name, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[label_key])
        return _from_numpy(np.concatenate(images), np.asarray(labels))

    return read(train_files), read([test_file]) if with_test else None, classes


def _imagefolder(cfg: DataConfig, with_test: bool) -> tuple[Split, Split | None, int]:
    """``root/train/<class>/*`` (and ``root/test/<class>/*``), resized to ``image_size``."""
    import torchvision
    from torchvision.transforms import v2

    root = Path(cfg.root or "data")
    if not (root / "train").is_dir():
        raise UserError(f"data.root: {root / 'train'} does not exist; expected one folder of "
                        "images per class there (and optionally test/ beside it)")
    size = int(cfg.options.get("image_size", 32))
    transform = v2.Compose([v2.PILToTensor(), v2.Resize(size), v2.CenterCrop(size)])

    def read(folder: Path) -> tuple[Split, int]:
        ds = torchvision.datasets.ImageFolder(str(folder), transform=transform)
        images = torch.stack([ds[i][0] for i in range(len(ds))])
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        return Split(images, labels, torch.arange(len(ds))), len(ds.classes)

    pool, classes = read(root / "train")
    if (root / "test").is_dir():
        return pool, read(root / "test")[0] if with_test else None, classes
    # No test folder: a fixed 20 % of train/ is the test split, carved whether or not it is
    # asked for, so that study trials never see it and replicates split the rest as they did.
    pool, test = _split(pool, 0.2, _TEST_SEED)
    return pool, test if with_test else None, classes


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: its loader and the options only it understands (``[data]`` keys that land in
    :attr:`DataConfig.options`), with their rules."""

    load: Source
    options: Mapping[str, Rule] = field(default_factory=dict)


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(_digits),
    "synthetic": DatasetEntry(_synthetic, {
        k: Rule("int", bound=NON_NEGATIVE if k == "seed" else AT_LEAST_ONE)
        for k in SYNTHETIC_DEFAULTS}),
    "cifar10": DatasetEntry(_cifar),
    "cifar100": DatasetEntry(_cifar),
    "imagefolder": DatasetEntry(_imagefolder, {"image_size": Rule("int", bound=AT_LEAST_ONE)}),
}


def _as_split(raw: Any, key: str, name: str) -> Split:
    """A user loader's ``(images, labels)`` pair as a Split; images become uint8."""
    where = f"data.name: {name} returned"
    if not isinstance(raw, tuple | list) or len(raw) != 2:
        raise UserError(f"{where} {type(raw).__name__} for {key!r}; expected (images, labels)")
    images, labels = (torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
                      for x in raw)
    if images.dim() != 4:
        raise UserError(f"{where} {key!r} images of shape {tuple(images.shape)}; expected "
                        "(N, C, H, W)")
    if images.is_floating_point():
        images = images.mul(255).round_().clamp_(0, 255)
    elif images.dtype != torch.uint8:
        raise UserError(f"{where} {key!r} images of dtype {images.dtype}; expected uint8 "
                        "(0..255) or floating point in [0, 1]")
    if labels.dim() != 1 or len(labels) != len(images) or labels.is_floating_point() \
            or (len(labels) and int(labels.min()) < 0):
        raise UserError(f"{where} {key!r} labels of shape {tuple(labels.shape)} and dtype "
                        f"{labels.dtype} for {len(images)} images; expected one integer >= 0 "
                        "per image")
    return Split(images.to(torch.uint8).contiguous(), labels.to(torch.int64),
                 torch.arange(len(labels)))


def _imported(cfg: DataConfig, with_test: bool) -> tuple[Split, Split | None, int]:
    """A user's loader (see :mod:`hpo.training._imported` for the protocol)."""
    out = resolve(cfg.name, "data.name")(with_test, **cfg.options)
    if not isinstance(out, Mapping) or "train" not in out:
        raise UserError(f"data.name: {cfg.name} returned {type(out).__name__}; expected a "
                        "dict with 'train': (images, labels) and, when asked, 'test'")
    pool = _as_split(out["train"], "train", cfg.name)
    test = _as_split(out["test"], "test", cfg.name) if with_test and "test" in out else None
    if with_test and test is None:
        raise UserError(f"data.name: {cfg.name} returned no 'test' split when asked for it")
    classes = 1 + max(int(s.labels.max()) for s in (pool, test) if s is not None and len(s))
    if classes < 2:
        raise UserError(f"data.name: {cfg.name} returned labels of one class only")
    return pool, test, classes


def source(name: str) -> Source:
    """The loader of dataset ``name``: a table entry or an import path."""
    return _imported if is_import_path(name) else lookup(DATASETS, name, "data.name").load


def load_data(cfg: DataConfig, with_test: bool = False) -> Data:
    """Loads ``cfg``'s dataset and carves the validation split (``val_fraction``, ``split_seed``).

    Args:
        cfg: what to load.
        with_test: also load the test split; studies never do, only final evaluation.
    """
    pool, test, classes = source(cfg.name)(cfg, with_test)
    train, val = _split(pool, cfg.val_fraction, cfg.split_seed)
    pixels = train.images.float().div_(255)
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    return Data(train, val, test, classes, mean, std)


def check_data(cfg: DataConfig) -> Data:
    """Loads ``cfg``'s data once, before any trial exists; a missing, unreadable or damaged
    dataset is one :class:`UserError` line naming the key, the path and what to do.

    Without this, every trial of a study fails on the same missing files, one traceback each,
    and the study is left holding only failures.
    """
    try:
        return load_data(cfg)
    except UserError:
        raise
    except Exception as e:  # torchvision, pickle, PIL and users' loaders fail in many ways
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if is_import_path(cfg.name):
            raise UserError(f"data.name: {cfg.name} failed ({why})") from None
        where = Path(cfg.root or "data")
        raise UserError(f"data.root: cannot read the {cfg.name} data under {where} "
                        f"({why}); check the path and the files there") from None
