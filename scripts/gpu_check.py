"""The GPU acceptance run, in one command: CUDA tests, throughput, packing, a real study.

    python scripts/gpu_check.py OUT_DIR            # on a CUDA machine, at most about 8 minutes
    python scripts/gpu_check.py --dry-run OUT_DIR  # on the CPU, tiny sizes, under 2 minutes (CI)

Each step runs in its own process with its own time limit, so one failing step still leaves
the others' figures. Every figure lands as a ``key=value`` line in ``OUT_DIR/figures.txt``
(also printed), each step's output in ``OUT_DIR/<step>.log``, and a readable
``OUT_DIR/summary.md``. Steps:

1. ``tests``: ``pytest -m cuda`` (bf16 against fp32, fused optimizers, compiled against eager, a
   real CUDA out-of-memory requeued and retried); skipped on the CPU.
2. ``throughput``: ``scripts/bench_throughput.py``: ResNet-20, batch 512, 45,000 CIFAR-shaped
   training images, hpo's trainer against the naive DataLoader loop in the same run.
3. ``packing``: ``scripts/bench_packing.py``: trials/hour at 1, 2, 4 and auto trials per GPU.
4. ``launch``: a real ``hpo launch --gpus 0 --trials-per-gpu auto`` of a pruned ResNet-20 study
   on synthetic CIFAR-shaped data, journal storage; then checks that nothing is left RUNNING or
   WAITING and that every trial's ``device`` names the CUDA device.

On the device machine (see the README's Development section) the project is not installed: the
checkout is on ``PYTHONPATH`` and optuna's wheels come from ``.whl/``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # hpo from this checkout, installed or not (the GPU machine)

LAUNCH_SPEC = """
[study]
name = "gpu-check"
n_trials = {trials}
[sampler]
name = "tpe"
seed = 0
n_startup_trials = 4
[pruner]
name = "successive_halving"
min_resource = 1
reduction_factor = 2
[data]
name = "synthetic"
train_size = {train_size}
test_size = 100
crop_padding = 4
flip = true
[model]
name = "{model}"
[training]
epochs = {epochs}
batch_size = {batch_size}
[search]
optimizer = ["sgd", "nesterov", "adamw"]
schedule = ["cosine", "onecycle"]
"""

# (step, seconds it may take) on the GPU; the dry run takes a fraction of each, but shares
# the CPU with whatever else a CI machine runs.
LIMITS = {"tests": 120, "throughput": 75, "packing": 120, "launch": 150}


def run_step(name: str, cmd: list[str], out: Path, limit: float,
             cwd: Path = REPO) -> tuple[bool, str]:
    """Runs ``cmd``, logs its output to ``out/<name>.log``; (exit 0 within the limit, output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=limit)
        ok, text = done.returncode == 0, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        ok = False
        text = f"{e.stdout or ''}{e.stderr or ''}\n[gpu_check] {name}: over its {limit:.0f} s"
    took = time.monotonic() - start
    text += f"\n[gpu_check] {name}: {'ok' if ok else 'FAILED'} in {took:.1f} s\n"
    (out / f"{name}.log").write_text(text)
    return ok, text


def last_figures(text: str) -> dict[str, str]:
    """The ``key=value`` pairs of the last line that has any (the benchmarks' contract)."""
    for line in reversed(text.splitlines()):
        pairs = dict(re.findall(r"(\w+)=(\S+)", line))
        if pairs and not line.startswith("[gpu_check]"):
            return pairs
    return {}


def check_launch(journal: Path, study: str, want_device: str) -> dict[str, str]:
    """Reads the launched study back: states, and the device every trial trained on."""
    import optuna
    from optuna.trial import TrialState

    from hpo import record

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name=study, storage=storage).get_trials()
    count = {s: sum(t.state == s for t in trials) for s in TrialState}
    devices = {t.user_attrs.get(record.DEVICE) for t in trials if t.state != TrialState.WAITING}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {
        "launch_trials": str(len(trials)),
        "launch_complete": str(count[TrialState.COMPLETE]),
        "launch_pruned": str(count[TrialState.PRUNED]),
        "launch_left_running": str(count[TrialState.RUNNING]),
        "launch_left_waiting": str(count[TrialState.WAITING]),
        "launch_devices": ",".join(sorted(str(d) for d in devices)),
        "launch_all_on_device": str(int(bool(trials) and all(
            str(d).startswith(want_device) for d in devices))),
        "launch_best": f"{max(t.value for t in complete):.4f}" if complete else "-",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for figures.txt, summary.md, logs")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes: checks that every step works, measures nothing")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    dry = args.dry_run
    import torch

    cuda = torch.cuda.is_available()
    if not dry and not cuda:
        print("gpu_check.py: no CUDA device here; use --dry-run on the CPU", file=sys.stderr)
        return 2
    py = sys.executable
    figures: dict[str, str] = {
        "mode": "dry_run" if dry else "gpu",
        "card": torch.cuda.get_device_name(0).replace(" ", "_") if cuda and not dry else "cpu",
        "torch": torch.__version__, "python": sys.version.split()[0],
    }
    started = time.monotonic()

    # in the dry run every test is skipped: one test process, not the suite's two
    ok, text = run_step("tests", [py, "-m", "pytest", "-m", "cuda", "-q", "-p",
                                  "no:cacheprovider", *(["-n", "0"] if dry else []),
                                  "tests/cuda"], out, LIMITS["tests"])
    summary = re.findall(r"(\d+) (passed|failed|skipped|error)", text)
    figures.update({f"cuda_tests_{word}": n for n, word in summary})
    figures["tests_ok"] = str(int(ok))

    bench = ([py, "scripts/bench_throughput.py", "--device", "cpu", "--batch-size", "64",
              "--train-size", "300", "--epochs", "1", "--repeats", "1"] if dry else
             [py, "scripts/bench_throughput.py", "--device", "cuda", "--batch-size", "512",
              "--train-size", "50000", "--epochs", "3", "--repeats", "2"])
    ok, text = run_step("throughput", bench, out, LIMITS["throughput"])
    figures.update({f"throughput_{k}": v for k, v in last_figures(text).items()})
    figures["throughput_ok"] = str(int(ok))

    packing = ([py, "scripts/bench_packing.py", "--cpu", "--trials", "2", "--epochs", "1",
                "--train-size", "200"] if dry else
               [py, "scripts/bench_packing.py", "--trials", "8", "--epochs", "2",
                "--train-size", "20000"])
    ok, text = run_step("packing", packing, out, LIMITS["packing"])
    figures.update({f"packing_{k}": v for k, v in last_figures(text).items()})
    figures["packing_ok"] = str(int(ok))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sizes = (dict(trials=4, train_size=300, epochs=2, batch_size=64, model="resnet8") if dry
                 else dict(trials=24, train_size=20000, epochs=8, batch_size=512,
                           model="resnet20"))
        (work / "gpu-check.toml").write_text(LAUNCH_SPEC.format(**sizes))
        place = ["--workers", "1"] if dry else ["--gpus", "0", "--trials-per-gpu", "auto"]
        journal = out / "gpu-check.journal"
        journal.unlink(missing_ok=True)
        ok, text = run_step("launch", [py, "-m", "hpo", "launch", "gpu-check.toml", "--storage",
                                       str(journal), "--checkpoint-dir", str(work / "ckpt"),
                                       *place], out, LIMITS["launch"], cwd=work)
        figures["launch_ok"] = str(int(ok))
        auto = re.search(r"auto packing: GPU 0: (\d+) trials", text)
        if auto:
            figures["launch_auto_packing"] = auto.group(1)
        if journal.exists():
            figures.update(check_launch(journal, "gpu-check", "cpu" if dry else "cuda"))

    figures["total_s"] = f"{time.monotonic() - started:.0f}"
    lines = [f"{k}={v}" for k, v in figures.items()]
    (out / "figures.txt").write_text("\n".join(lines) + "\n")
    (out / "summary.md").write_text(_summary(figures))
    print("\n".join(lines))
    steps = ("tests_ok", "throughput_ok", "packing_ok", "launch_ok")
    good = all(figures.get(k) == "1" for k in steps) and figures.get(
        "launch_left_running") == "0" and figures.get("launch_left_waiting") == "0" and \
        figures.get("launch_all_on_device") == "1"
    return 0 if good else 1


def _summary(f: dict[str, str]) -> str:
    """The figures as the README's Performance rows would read them."""
    get = f.get
    return "\n".join([
        f"# gpu_check ({get('mode')}): {get('card')}, torch {get('torch')}, "
        f"python {get('python')}",
        "",
        f"- CUDA tests: {get('cuda_tests_passed', '0')} passed, "
        f"{get('cuda_tests_failed', '0')} failed, {get('cuda_tests_skipped', '0')} skipped",
        f"- throughput: hpo {get('throughput_hpo_epoch_s', '-')} s/epoch "
        f"({get('throughput_hpo_images_per_s', '-')} images/s), naive "
        f"{get('throughput_naive_images_per_s', '-')} images/s: ratio "
        f"{get('throughput_ratio', '-')}",
        "- packing (trials/hour): " + ", ".join(
            f"{k.removeprefix('packing_trials_per_hour_')}: {v}" for k, v in f.items()
            if k.startswith("packing_trials_per_hour_")) + "; " + ", ".join(
            f"{k.removeprefix('packing_').replace('_over_', '/')} = {v}" for k, v in f.items()
            if k.startswith("packing_") and k.endswith("_over_1")),
        f"- launch: {get('launch_trials', '-')} trials ({get('launch_complete', '-')} complete, "
        f"{get('launch_pruned', '-')} pruned), left running {get('launch_left_running', '-')}, "
        f"waiting {get('launch_left_waiting', '-')}, devices {get('launch_devices', '-')}, "
        f"auto packing {get('launch_auto_packing', '-')}, best {get('launch_best', '-')}",
        f"- total {get('total_s')} s",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
