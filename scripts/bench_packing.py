"""Study throughput (trials per hour) with 1, 2, 4 and auto trials per GPU (CUDA only).

ResNet-20 on CIFAR-shaped synthetic data (3x32x32, 10 classes), batch 512, every trial the same
length (no pruning), run through the real ``hpo launch`` on one GPU; each packing is its own
study, all in this one run. Figures on the last line as key=value pairs.

    .venv/bin/python scripts/bench_packing.py [--trials 8] [--epochs 3] [--train-size 20000]

``--cpu`` (the dry run of ``scripts/gpu_check.py``) runs the same launches with 1 and 2 CPU
worker processes instead, so the script is known to work before a GPU is at hand.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SPEC = """
[study]
name = "packing"
n_trials = {trials}
[sampler]
name = "random"
seed = 0
[pruner]
name = "none"
[data]
name = "synthetic"
train_size = {train_size}
test_size = 100
crop_padding = 4
flip = true
[model]
name = "resnet20"
[training]
epochs = {epochs}
batch_size = 512
[search]
optimizer = ["sgd", "nesterov"]
schedule = "cosine"
"""


def run(packing: str, args: argparse.Namespace, tmp: Path) -> float:
    """Trials per hour at this packing (worker processes on the CPU with ``--cpu``)."""
    spec = tmp / f"packing-{packing}.toml"
    spec.write_text(SPEC.format(trials=args.trials, epochs=args.epochs,
                                train_size=args.train_size))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpo", "launch", str(spec), "--storage",
                    str(tmp / f"{packing}.journal"),
                    *(["--workers", packing] if args.cpu else
                      ["--gpus", "0", "--trials-per-gpu", packing]),
                    "--checkpoint-dir", str(tmp / "ckpt")], check=True, cwd=tmp,
                   stdout=subprocess.DEVNULL)
    return args.trials / (time.perf_counter() - start) * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=20_000)
    parser.add_argument("--cpu", action="store_true", help="1 and 2 CPU workers (a dry run)")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("bench_packing.py needs a CUDA GPU (or --cpu for a dry run)")
    card = "cpu" if args.cpu else torch.cuda.get_device_name(0)
    packings = ("1", "2") if args.cpu else ("1", "2", "4", "auto")
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for packing in packings:
            results[packing] = run(packing, args, Path(d))
            print(f"{card}: {packing} per GPU: {results[packing]:.0f} trials/hour", flush=True)
    print(f"card={card.replace(' ', '_')} " + " ".join(
        f"trials_per_hour_{k}={v:.0f}" for k, v in results.items())
        + f" {packings[-1]}_over_1={results[packings[-1]] / results['1']:.2f}")


if __name__ == "__main__":
    main()
