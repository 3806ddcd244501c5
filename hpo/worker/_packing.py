"""``--trials-per-gpu auto``: how many concurrent trial processes fit on one GPU.

A probe process trains the study's configuration for a few steps on the GPU and reports the
peak memory PyTorch allocated; each trial process then needs that plus its CUDA context. The
rest of the card, minus 10 % headroom, decides the packing. If a trial still runs out of
memory, its worker requeues it and exits, lowering the packing by one (see the objective).
"""

from __future__ import annotations

import multiprocessing

CONTEXT_BYTES = 768 << 20  # CUDA context, cuDNN workspace and allocator slack per process
MAX_PACKING = 16


def trials_that_fit(total_bytes: int, peak_bytes: int, headroom: float = 0.1) -> int:
    """Processes of ``peak_bytes`` (plus a context each) that fit in ``total_bytes``."""
    usable = total_bytes * (1 - headroom)
    return max(1, min(MAX_PACKING, int(usable // (peak_bytes + CONTEXT_BYTES))))


def _probe(raw_spec: dict, gpu: str, queue: multiprocessing.Queue) -> None:
    import dataclasses
    import os

    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    from hpo.study._spec import parse_spec
    from hpo.training import train

    spec = parse_spec(raw_spec, "probe")
    steps = {"n": 0}

    def few_steps() -> bool:
        steps["n"] += 1
        return steps["n"] > 20

    config = dataclasses.replace(spec.base, epochs=1)
    train(config, should_stop=few_steps)
    queue.put((torch.cuda.get_device_properties(0).total_memory,
               torch.cuda.max_memory_allocated()))


def measure_packing(raw_spec: dict, gpu: str) -> int:
    """Runs the probe on ``gpu`` in a fresh process and returns the packing."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_probe, args=(raw_spec, gpu, queue))
    p.start()
    p.join()
    if p.exitcode != 0:
        return 1
    total, peak = queue.get()
    return trials_that_fit(total, peak)
