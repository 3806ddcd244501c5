import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpo.errors import UserError
from hpo.training import DataConfig, load_data, random_crop, random_flip


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_train_validation_and_test_splits_are_disjoint(name: str) -> None:
    data = load_data(DataConfig(name=name, val_fraction=0.25), with_test=True)
    train, val = set(data.train.index.tolist()), set(data.val.index.tolist())
    assert not train & val
    assert data.test is not None and len(data.val) == pytest.approx(
        0.25 * (len(train) + len(val)), abs=1)
    if name == "digits":  # one source: the test split is carved from the same 1797 images
        test = set(data.test.index.tolist())
        assert not test & (train | val)
        assert len(train | val | test) == 1797


def _imagefolder(root: Path, with_test_folder: bool) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 15), ("test", 3)) if with_test_folder else (("train", 15),):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def _write_cifar100(root: Path, n: int) -> None:
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        with open(base / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": rng.integers(0, 100, n).tolist()}, f)


KINDS = ["digits", "synthetic", "cifar10", "cifar100", "imagefolder", "imagefolder+test"]


def test_every_dataset_is_tested() -> None:
    """A new DATASETS entry needs a kind in KINDS (written in its on-disk format)."""
    from hpo.training import DATASETS

    assert set(DATASETS) == {k.split("+")[0] for k in KINDS}


def _config(kind: str, root: Path) -> DataConfig:
    if kind == "cifar10":
        _write_cifar(root, 20)
    elif kind == "cifar100":
        _write_cifar100(root, 30)
    elif kind.startswith("imagefolder"):
        _imagefolder(root, with_test_folder=kind == "imagefolder+test")
    name = kind.split("+")[0]
    return DataConfig(name=name, root=str(root), val_fraction=0.2,
                      options={"image_size": 8} if name == "imagefolder" else {})


def _images(split) -> set[bytes]:
    return {bytes(img.numpy().tobytes()) for img in split.images}


@pytest.mark.parametrize("kind", KINDS)
def test_study_and_replicates_split_alike_and_never_share_test_images(kind: str,
                                                                      tmp_path: Path) -> None:
    """What a study trains and validates on (no test split asked) and what a replicate
    (test split asked) is tested on never overlap; both see the same validation images."""
    cfg = _config(kind, tmp_path)
    study = load_data(cfg)
    replicate = load_data(cfg, with_test=True)
    assert study.test is None and replicate.test is not None and len(replicate.test)
    assert torch.equal(study.val.images, replicate.val.images)
    assert torch.equal(study.train.images, replicate.train.images)
    if kind == "digits":  # real data may repeat an image; one source: compare positions
        seen = set(study.train.index.tolist()) | set(study.val.index.tolist())
        assert not seen & set(replicate.test.index.tolist())
    else:
        assert not (_images(study.train) | _images(study.val)) & _images(replicate.test)


def test_study_loads_never_include_the_test_split() -> None:
    assert load_data(DataConfig(name="digits")).test is None


def test_test_split_does_not_move_with_the_validation_seed() -> None:
    a = load_data(DataConfig(name="digits", split_seed=0), with_test=True)
    b = load_data(DataConfig(name="digits", split_seed=1), with_test=True)
    assert torch.equal(a.test.index, b.test.index)
    assert not torch.equal(a.val.index, b.val.index)


def test_digits_are_real_8x8_images() -> None:
    data = load_data(DataConfig(name="digits"))
    assert data.train.images.shape[1:] == (1, 8, 8) and data.train.images.dtype == torch.uint8
    assert data.num_classes == 10 and int(data.train.images.max()) == 255


def test_digits_are_scikit_learns_load_digits_image_for_image() -> None:
    """hpo reads scikit-learn's file itself (no import); load_digits is the reference."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = load_data(DataConfig(name="digits", val_fraction=0.2), with_test=True)
    every = torch.cat([data.train.images, data.val.images, data.test.images])
    labels = torch.cat([data.train.labels, data.val.labels, data.test.labels])
    expected = torch.from_numpy(np.clip(np.round(bunch.images * (255 / 16)), 0, 255)
                                .astype(np.uint8)[:, None])
    index = torch.cat([data.train.index, data.val.index, data.test.index])
    assert sorted(index.tolist()) == list(range(len(bunch.target)))  # each image once
    assert torch.equal(every, expected[index])  # image for image, at its source position
    assert torch.equal(labels, torch.from_numpy(bunch.target)[index])


def _write_cifar(root: Path, n_per_batch: int) -> np.ndarray:
    """Writes CIFAR-10 in torchvision's python-pickle layout; returns the test images."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_images = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with open(base / name, "wb") as f:
            pickle.dump({"data": images, "labels": labels, "batch_label": name}, f)
        if name == "test_batch":
            test_images = images
    return test_images


def test_cifar10_reads_the_on_disk_format(tmp_path: Path) -> None:
    test_images = _write_cifar(tmp_path, 20)
    data = load_data(DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.1),
                     with_test=True)
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20
    assert data.train.images.shape[1:] == (3, 32, 32)
    assert torch.equal(data.test.images[0], torch.from_numpy(test_images[0].reshape(3, 32, 32)))


def test_missing_cifar_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data.root: cifar10 not found at .*cifar-10-batches-py"):
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))


def test_imagefolder_reads_class_folders(tmp_path: Path) -> None:
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 24), (i * 40, 0, 0)).save(folder / f"{i}.png")
    data = load_data(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.25,
                                options={"image_size": 16}), with_test=True)
    assert data.num_classes == 2 and data.train.images.shape[1:] == (3, 16, 16)
    assert len(data.train) + len(data.val) == 12 and len(data.test) == 4


def test_crop_covers_every_offset_and_shifts_exactly() -> None:
    torch.manual_seed(0)
    images = torch.randint(1, 256, (4000, 1, 6, 6), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    cropped = random_crop(images, 2, g)
    seen = set()
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(len(images)):
        for dy in range(5):
            for dx in range(5):
                if torch.equal(cropped[i], padded[i, :, dy:dy + 6, dx:dx + 6]):
                    seen.add((dy, dx))
                    break
            else:
                continue
            break
        else:
            pytest.fail(f"image {i} is not a shifted copy")
    assert len(seen) == 25


def test_flip_mirrors_about_half_of_the_images() -> None:
    images = torch.arange(2 * 1 * 1 * 3, dtype=torch.uint8).view(2, 1, 1, 3).repeat(500, 1, 1, 1)
    out = random_flip(images, torch.Generator().manual_seed(0))
    flipped = (out == images.flip(3)).all(dim=(1, 2, 3))
    kept = (out == images).all(dim=(1, 2, 3))
    assert bool((flipped | kept).all())
    assert 400 < int(flipped.sum()) < 600
