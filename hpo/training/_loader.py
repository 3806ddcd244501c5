"""Device-resident batches: the whole split lives on the device, augmentation runs there.

As in airbench, a split is copied to the device once as uint8; each epoch shuffles with
``randperm`` on the device and crops and flips the whole split in a few batched tensor ops. No
DataLoader, no worker processes, no host round trip per step.
"""

from __future__ import annotations

from collections.abc import Iterator

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


class DeviceBatches:
    """Iterates (normalized float images, labels) batches of a split held on ``device``.

    Args:
        split: the images and labels; copied to ``device`` once, here.
        batch_size: images per batch.
        mean, std: per-channel normalization in 0..1 pixel units.
        train: shuffle, augment and drop the last partial batch (BatchNorm needs > 1 sample).
        crop_padding, flip: augmentation, applied only when ``train``.
        generator: the random stream, on ``device``; seeded by the caller for reproducibility.
        channels_last: memory format of the yielded images (faster convolutions on CUDA).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        train: bool,
        crop_padding: int = 0,
        flip: bool = False,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
    ) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.train = train
        self.crop_padding = crop_padding
        self.flip = flip
        self.generator = generator
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        n = len(self.labels)
        if self.train:
            return max(1, n // self.batch_size)
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.images, self.labels
        if self.train:
            assert self.generator is not None, "training batches need a seeded generator"
            order = torch.randperm(len(labels), generator=self.generator, device=labels.device)
            images, labels = images[order], labels[order]
            images = random_crop(images, self.crop_padding, self.generator)
            if self.flip:
                images = random_flip(images, self.generator)
        for i in range(len(self)):
            x = images[i * self.batch_size : (i + 1) * self.batch_size]
            x = ((x.float() - self.mean) / self.std).contiguous(memory_format=self.memory_format)
            yield x, labels[i * self.batch_size : (i + 1) * self.batch_size]


class HostBatches:
    """The conventional path: a torch DataLoader with CPU transforms, one host copy per batch.

    For data that should not live on the device; also the baseline that
    ``scripts/bench_throughput.py`` measures the device path against. Same interface as
    :class:`DeviceBatches`.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        train: bool,
        crop_padding: int = 0,
        flip: bool = False,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        workers: int = 0,
    ) -> None:
        from torch.utils.data import DataLoader, TensorDataset
        from torchvision.transforms import v2

        steps: list[torch.nn.Module] = []
        if train and crop_padding:
            steps.append(v2.RandomCrop(split.images.shape[-1], padding=crop_padding))
        if train and flip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        transform = v2.Compose(steps)

        class _Transformed(TensorDataset):
            def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
                x, y = super().__getitem__(i)
                return transform(x), y

        self.labels = split.labels
        self.loader = DataLoader(
            _Transformed(split.images, split.labels), batch_size=batch_size, shuffle=train,
            drop_last=train and len(split) > batch_size, num_workers=workers,
            generator=torch.Generator().manual_seed(int(generator.initial_seed()))
            if generator is not None else None,
            pin_memory=device.type == "cuda",
        )
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=True)
