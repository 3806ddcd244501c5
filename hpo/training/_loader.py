"""Batches for the trainer: device-resident (the default) or through a DataLoader.

:class:`DeviceBatches`, as in airbench: a split is copied to the device once as uint8; each
epoch shuffles with ``randperm`` on the device and crops and flips the whole split in a few
batched tensor ops, with no DataLoader, no worker processes and no host round trip per step.
:class:`HostBatches` is the conventional DataLoader path, for data that should stay on the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hpo.training._data import Split


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pads by ``padding`` and crops back to the original size at a random offset per image.

    Offsets are uniform over the (2 * padding + 1)**2 positions; done with one gather.
    """
    if padding <= 0:
        return images
    n, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    return padded[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows,
        cols,
    ]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirrors each image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


@dataclass(frozen=True)
class Batching:
    """How a split is served: one value that both loaders take, so the trainer picks either.

    Attributes:
        batch_size: images per batch.
        mean, std: per-channel normalization in 0..1 pixel units.
        train: shuffle, augment and drop the last partial batch (BatchNorm needs > 1 sample).
        crop_padding, flip: augmentation, applied only when ``train``.
        channels_last: memory format of the yielded images (faster convolutions on CUDA).
    """

    batch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: bool = False
    crop_padding: int = 0
    flip: bool = False
    channels_last: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


class DeviceBatches:
    """Iterates (normalized float images, labels) batches of a split held on ``device``.

    Args:
        split: the images and labels; copied to ``device`` once, here.
        how: batch size, normalization and augmentation.
        generator: the random stream, on ``device``; seeded by the caller for reproducibility.
    """

    def __init__(self, split: Split, how: Batching, device: torch.device,
                 generator: torch.Generator | None = None) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.how = how
        self.mean = torch.tensor(how.mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(how.std, device=device).view(1, -1, 1, 1) * 255
        self.generator = generator

    def __len__(self) -> int:
        n, size = len(self.labels), self.how.batch_size
        return max(1, n // size) if self.how.train else -(-n // size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels, how = self.images, self.labels, self.how
        if how.train:
            assert self.generator is not None, "training batches need a seeded generator"
            order = torch.randperm(len(labels), generator=self.generator, device=labels.device)
            images, labels = images[order], labels[order]
            images = random_crop(images, how.crop_padding, self.generator)
            if how.flip:
                images = random_flip(images, self.generator)
        size = how.batch_size
        for i in range(len(self)):
            x = ((images[i * size : (i + 1) * size].float() - self.mean) / self.std)
            yield x.contiguous(memory_format=how.memory_format), labels[i * size : (i + 1) * size]


class _Augmented(torch.utils.data.Dataset):
    """A split whose every sample is transformed under its own seed: ``epoch seed + index``.

    torchvision's transforms draw from the global RNG; seeding each sample's draw (in a forked
    RNG, so the caller's stream is untouched) makes an epoch a function of its seed alone,
    whatever the number of loader workers and however far a resumed run skips ahead.
    """

    def __init__(self, split: Split, transform: torch.nn.Module) -> None:
        self.images, self.labels, self.transform = split.images, split.labels, transform
        self.seed: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.seed is None:
            return self.transform(self.images[i]), self.labels[i]
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also seeds CUDA's, which on a machine
            # whose CUDA has not started records a stack trace per call (65 % of an epoch)
            torch.default_generator.manual_seed((self.seed + i) % 2**63)
            return self.transform(self.images[i]), self.labels[i]


class HostBatches:
    """The conventional path: a torch DataLoader with CPU transforms, one host copy per batch.

    For data that should not live on the device; also the baseline that
    ``scripts/bench_throughput.py`` measures the device path against. Same interface as
    :class:`DeviceBatches`, and the same promise: each training epoch draws one seed from
    ``generator`` (its shuffle and every sample's crop and flip follow from it), so replaying
    the generator's state replays the epoch exactly. Without a generator the epochs draw from
    the global RNG, as the usual tutorial loop does (the benchmark's baseline).
    """

    def __init__(self, split: Split, how: Batching, device: torch.device,
                 generator: torch.Generator | None = None, workers: int = 0) -> None:
        from torchvision.transforms import v2

        steps: list[torch.nn.Module] = []
        if how.train and how.crop_padding:
            steps.append(v2.RandomCrop(split.images.shape[-1], padding=how.crop_padding))
        if how.train and how.flip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(how.mean, how.std)]
        self.dataset = _Augmented(split, v2.Compose(steps))
        self.labels = split.labels
        self.how, self.device, self.generator, self.workers = how, device, generator, workers

    def __len__(self) -> int:
        n, size = len(self.labels), self.how.batch_size
        return max(1, n // size) if self.how.train and n > size else -(-n // size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader

        how, shuffle = self.how, None
        if how.train and self.generator is not None:  # None: unseeded, as in a tutorial loop
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator,
                                     device=self.generator.device))
            self.dataset.seed = seed
            shuffle = torch.Generator().manual_seed(seed)
        loader = DataLoader(
            self.dataset, batch_size=how.batch_size, shuffle=how.train,
            drop_last=how.train and len(self.labels) > how.batch_size,
            num_workers=self.workers, generator=shuffle,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=how.memory_format)
            yield x, y.to(self.device, non_blocking=True)
