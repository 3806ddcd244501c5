"""Device-resident batches: the whole split lives on the device, augmentation runs there.

As in airbench, a split is copied to the device once as uint8; each epoch shuffles with
``randperm`` on the device and crops and flips the whole split in a few batched tensor ops. No
DataLoader, no worker processes, no host round trip per step.
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


class HostBatches:
    """The conventional path: a torch DataLoader with CPU transforms, one host copy per batch.

    For data that should not live on the device; also the baseline that
    ``scripts/bench_throughput.py`` measures the device path against. Same interface as
    :class:`DeviceBatches`.
    """

    def __init__(self, split: Split, how: Batching, device: torch.device,
                 generator: torch.Generator | None = None, workers: int = 0) -> None:
        from torch.utils.data import DataLoader, TensorDataset
        from torchvision.transforms import v2

        steps: list[torch.nn.Module] = []
        if how.train and how.crop_padding:
            steps.append(v2.RandomCrop(split.images.shape[-1], padding=how.crop_padding))
        if how.train and how.flip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(how.mean, how.std)]
        transform = v2.Compose(steps)

        class _Transformed(TensorDataset):
            def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
                x, y = super().__getitem__(i)
                return transform(x), y

        self.labels = split.labels
        self.loader = DataLoader(
            _Transformed(split.images, split.labels), batch_size=how.batch_size,
            shuffle=how.train, drop_last=how.train and len(split) > how.batch_size,
            num_workers=workers,
            generator=torch.Generator().manual_seed(int(generator.initial_seed()))
            if generator is not None else None,
            pin_memory=device.type == "cuda",
        )
        self.device = device
        self.memory_format = how.memory_format

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=True)
