"""Training throughput: the hpo trainer against a naive PyTorch loop, same model, batch, data.

Naive baseline: torchvision DataLoader with CPU transforms (random crop, flip, normalize),
fp32, ``loss.item()`` after every step (a host sync per step), the usual tutorial loop. hpo:
:func:`hpo.training.train` (device-resident uint8 data, augmentation batched on the device,
one sync per epoch, channels_last; on CUDA also bf16 autocast, cudnn.benchmark, fused
optimizers). Both train a
ResNet-20 on CIFAR-shaped synthetic data and evaluate the validation split every epoch; both
are timed in this one run, and hpo once more without its per-stage gradient diagnostics
(``diagnostics_overhead``: their cost, goal at most +0.03). Figures on the last line.

    .venv/bin/python scripts/bench_throughput.py [--device cpu|cuda] [--batch-size 512]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from hpo.training import (
    Data,
    DataConfig,
    ModelConfig,
    TrainConfig,
    apply_init,
    build_model,
    build_optimizer,
    load_data,
    train,
)
from hpo.training._loader import Batching, HostBatches


def naive(config: TrainConfig, data: Data, device: torch.device, workers: int) -> float:
    """Seconds for the tutorial-style loop over ``config.epochs`` epochs."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.channels, data.num_classes)
    apply_init(model, config.init, False)
    model = model.to(device)
    opt = build_optimizer(config.optimizer, model, config.lr, config.weight_decay, False, {})
    how = Batching(config.batch_size, data.mean, data.std)
    train_b = HostBatches(data.train, replace(how, train=True, crop_padding=4, flip=True), device,
                          workers=workers)
    val_b = HostBatches(data.val, how, device, workers=workers)
    start = time.perf_counter()
    for _ in range(config.epochs):
        model.train()
        for x, y in train_b:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the per-step host sync of the usual logging loop
        model.eval()
        with torch.no_grad():
            for x, y in val_b:
                (model(x).argmax(1) == y).sum().item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    size = args.train_size or (50_000 if cuda else 3_000)
    epochs = args.epochs or (5 if cuda else 2)
    config = TrainConfig(
        data=DataConfig(name="synthetic", val_fraction=0.1, crop_padding=4, flip=True,
                        options={"train_size": size, "test_size": 10}),
        model=ModelConfig("resnet20"), optimizer="sgd", lr=0.1, weight_decay=5e-4,
        schedule="cosine", epochs=epochs, batch_size=args.batch_size, seed=0,
    )
    images = int(size * (1 - 0.1)) * epochs
    data = load_data(config.data)  # both paths start from the same loaded uint8 split
    workers = 4 if cuda else 0
    # warm up both paths once (CUDA context, cudnn autotuning, allocator) before timing
    warm = TrainConfig(**{**config.__dict__, "epochs": 1})
    train(warm, data, device=device)
    naive(warm, data, device, workers)
    # alternate them, best of --repeats each: a shared machine's noise hits all alike
    bare = replace(config, diagnostics=False)  # hpo without the per-stage gradient figures
    fast = slow = plain = float("inf")
    for _ in range(args.repeats):
        fast = min(fast, train(config, data, device=device).wall_time_s)
        plain = min(plain, train(bare, data, device=device).wall_time_s)
        slow = min(slow, naive(config, data, device, workers))
    card = torch.cuda.get_device_name() if cuda else f"cpu x{torch.get_num_threads()} threads"
    print(f"{card}: ResNet-20, batch {args.batch_size}, {images} training images")
    print(f"hpo trainer:    {images / fast:8.0f} images/s ({fast / epochs:.2f} s/epoch)")
    print(f"naive baseline: {images / slow:8.0f} images/s ({slow / epochs:.2f} s/epoch)")
    print(f"gradient diagnostics: {fast / epochs:.3f} s/epoch with, {plain / epochs:.3f} s/epoch "
          "without")
    print(f"device={args.device} batch={args.batch_size} hpo_images_per_s={images / fast:.1f} "
          f"naive_images_per_s={images / slow:.1f} hpo_epoch_s={fast / epochs:.3f} "
          f"ratio={slow / fast:.2f} diagnostics_overhead={fast / plain - 1:+.3f}")


if __name__ == "__main__":
    main()
