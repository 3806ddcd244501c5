"""``hpo train FILE``: retrain an exported configuration, and check that it reproduces.

Needs no study: the export carries the whole resolved configuration (see
:mod:`hpo.review._export`). ``--verify`` compares the first seed's metric with the exported
value: exactly from CPU to CPU (training there is deterministic for a seed and a thread count,
which the export records), within 0.01 otherwise (GPU kernels are not bit-reproducible).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path

from hpo.errors import UserError
from hpo.review._export import load_recipe

# Allowed difference when the export or this run used a GPU.
GPU_TOLERANCE = 0.01


def retrain(path: str | Path, seeds: int, verify: bool, tolerance: float | None) -> int:
    """Trains the export at ``path`` with seeds seed, seed+1, ...; prints one line per seed.

    Returns 0, or 1 when a run did not complete or ``verify`` found a difference above
    ``tolerance`` (default: 0 from CPU to CPU, :data:`GPU_TOLERANCE` otherwise).
    """
    import torch

    from hpo.training import pick_device, train

    recipe = load_recipe(path)
    device = pick_device()
    if device.type == "cpu" and recipe.cpu_threads:
        torch.set_num_threads(recipe.cpu_threads)  # float sums depend on the thread count
    values = []
    for i in range(seeds):
        config = dataclasses.replace(recipe.config, seed=recipe.config.seed + i)
        result = train(config, device=device)
        if result.status != "completed":
            print(f"seed {config.seed}: {result.stop_reason}")
            return 1
        value = getattr(result.history[-1], recipe.metric)
        values.append(value)
        print(f"seed {config.seed}: {recipe.metric} {value:.6f} after {result.epochs_run} "
              f"epochs, {result.wall_time_s:.1f} s on {result.device}")
    if len(values) > 1:
        print(f"mean {statistics.fmean(values):.6f}, std {statistics.stdev(values):.6f} "
              f"over {len(values)} seeds")
    if not verify:
        return 0
    if recipe.value is None:
        raise UserError(f"{path}: metric.value: missing; nothing to verify against")
    if tolerance is None:
        tolerance = 0.0 if device.type == "cpu" and recipe.device == "cpu" else GPU_TOLERANCE
    diff = abs(values[0] - recipe.value)
    if diff <= tolerance:
        print(f"verified: {recipe.metric} {values[0]:.6f} matches the exported "
              f"{recipe.value:.6f} (difference {diff:.2g} <= tolerance {tolerance:g})")
        return 0
    print(f"verify failed: {recipe.metric} {values[0]:.6f} differs from the exported "
          f"{recipe.value:.6f} by {diff:.6f} (tolerance {tolerance:g})", file=sys.stderr)
    return 1
