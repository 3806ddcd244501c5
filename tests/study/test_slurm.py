"""The Slurm recipe under a real Slurm: a single-node cluster from Debian's slurm-wlm and munge
(``.ci/run`` installs them), the project's own sbatch script submitted as an array against a
PostgreSQL study, one array task cancelled mid-trial with ``scancel --signal=TERM --full``, one
task stopped by its time limit through ``--signal=B:TERM@N``; the study must finish with every
trial accounted for, the interrupted one resumed from its checkpoint, nothing left RUNNING."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo import record
from hpo.storage._backends import open_storage
from tests.conftest import REPO, hpo_here

SBATCH = REPO / "scripts" / "slurm" / "hpo-worker.sbatch"
SPEC = """
[study]
name = "slurm"
n_trials = 8
heartbeat_interval = 1
grace_period = 5
[sampler]
name = "random"
seed = 0
[pruner]
name = "none"
[data]
name = "synthetic"
size = 16
train_size = 1200
test_size = 50
[model]
name = "resnet8"
width = 8
[training]
epochs = 5
batch_size = 100
[search]
optimizer = ["sgd", "adam"]
"""
CONF = """
ClusterName=hpotest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _why_no_slurm() -> str | None:
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(b)]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing; .ci/run installs "
                "slurm-wlm and munge from Debian's packages)")
    if os.geteuid() != 0:
        return "a single-node Slurm for the test runs its daemons as root"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A single-node Slurm (slurmctld + slurmd on this machine), its environment for clients."""
    why = _why_no_slurm()
    if why:
        pytest.skip(why)
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(CONF.format(host=host, d=d, cpus=os.cpu_count() or 1))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, timeout=30)
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, timeout=30)
    subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, timeout=30)
    try:
        deadline = time.monotonic() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, text=True,
                                           capture_output=True).stdout:
            assert time.monotonic() < deadline, (d / "slurmctld.log").read_text()[-2000:]
            time.sleep(1)
        yield env
    finally:
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            if (d / pid_file).exists():
                subprocess.run(["kill", (d / pid_file).read_text().strip()])


def _sbatch(env: dict[str, str], tmp: Path, study: str, *options: str) -> str:
    out = subprocess.run(
        ["sbatch", "--parsable", "--cpus-per-task=1", f"--output={tmp}/slurm-%j.out",
         *options, str(SBATCH), study], env=env, cwd=REPO, text=True, capture_output=True,
        timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def _job_states(env: dict[str, str], job: str) -> list[tuple[str, str]]:
    """(JobState, ExitCode) of each task of ``job`` (finished jobs stay listed for minutes)."""
    out = subprocess.run(["scontrol", "show", "job", job, "-o"], env=env, text=True,
                         capture_output=True).stdout
    states = []
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        states.append((fields["JobState"], fields["ExitCode"]))
    return states


def test_the_sbatch_script_runs_a_study_through_cancellation_and_time_limit(
        slurm: dict[str, str], tmp_path: Path, pg_url: str, study_name: str) -> None:
    spec = tmp_path / "slurm.toml"
    spec.write_text(SPEC)
    created = hpo_here("create", str(spec), "--storage", pg_url, "--study-name", study_name,
                      cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    secret = tmp_path / "storage"
    secret.write_text(f"export HPO_STORAGE={pg_url}\n")
    secret.chmod(0o600)
    env = {**slurm, "HPO_STORAGE_FILE": str(secret), "HPO_REPO": str(REPO),
           "HPO_CHECKPOINT_DIR": str(tmp_path / "ckpt")}
    study = optuna.load_study(study_name=study_name, storage=open_storage(pg_url))

    array = _sbatch(env, tmp_path, study_name, "--array=0-1")
    # cancel the array task whose worker is in the middle of a trial, with Slurm's own signal
    deadline, victim = time.monotonic() + 180, None
    while victim is None:
        assert time.monotonic() < deadline, "no trial reached its second epoch"
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if 1 <= t.user_attrs.get(record.EPOCHS_RUN, 0) <= 3:
                victim = t
                break
        time.sleep(0.2)
    environ = Path(f"/proc/{victim.user_attrs[record.WORKER_PID]}/environ").read_bytes()
    slurm_env = dict(v.decode().split("=", 1) for v in environ.split(b"\0") if b"=" in v)
    # JOB_TASK: the array's first task shares the array's own id, which names every task
    task = f"{slurm_env['SLURM_ARRAY_JOB_ID']}_{slurm_env['SLURM_ARRAY_TASK_ID']}"
    subprocess.run(["scancel", "--signal=TERM", "--full", task], env=env, check=True,
                   timeout=30)
    # a third worker whose time limit ends it: SIGTERM 55 s before the 1-minute limit (or
    # sooner: Slurm signals up to a minute early, at its next check of time limits). On a study
    # of its own that outlasts any limit: on the array's study it found the study over before
    # the signal came, when nothing else loaded the machine (10 s after it started).
    endless = f"{study_name}-limited"
    spec.write_text(SPEC.replace("n_trials = 8", "n_trials = 10000"))
    created = hpo_here("create", str(spec), "--storage", pg_url, "--study-name", endless,
                       cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    limited = _sbatch(env, tmp_path, endless, "--time=1", "--signal=B:TERM@55")

    deadline = time.monotonic() + 300
    while subprocess.run(["squeue", "-h"], env=env, text=True, capture_output=True).stdout:
        assert time.monotonic() < deadline, "the Slurm jobs did not end"
        time.sleep(1)
    logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert "Traceback" not in logs, logs[-3000:]
    # every task ended by itself with exit 0: the cancelled one and the time-limited one too
    states = _job_states(env, array) + _job_states(env, limited)
    assert states and all(s == ("COMPLETED", "0:0") for s in states), (states, logs[-2000:])
    # the time limit's SIGTERM reached the worker (before its first trial, or during one)
    assert "[hpo] stopp" in (tmp_path / f"slurm-{limited}.out").read_text()
    cut = optuna.load_study(study_name=endless, storage=open_storage(pg_url)).get_trials()
    assert not [t for t in cut if t.state == TrialState.RUNNING]
    assert all("checkpointed and queued to resume" in t.user_attrs[record.STOP_REASON]
               for t in cut if t.state == TrialState.FAIL)

    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    interrupted = trials[victim.number]
    assert interrupted.state == TrialState.FAIL
    assert "checkpointed and queued to resume" in interrupted.user_attrs[record.STOP_REASON]
    # its chain: retries, each resuming from the checkpoint; the last one completes
    *stopped, last = [t for t in trials
                      if t.system_attrs.get(record.FAILED_TRIAL) == victim.number]
    assert last.state == TrialState.COMPLETE
    assert last.user_attrs[record.RESUMED_FROM_EPOCH] >= 1
    for t in stopped:
        assert t.state == TrialState.FAIL
        assert "checkpointed and queued to resume" in t.user_attrs[record.STOP_REASON]
    continued = record.retried_numbers(trials)
    finished = [t for t in trials if t.state in record.FINISHED and t.number not in continued]
    assert len(finished) >= 8
    lost = [t for t in trials if t.state == TrialState.FAIL and t.number not in continued]
    assert not lost
