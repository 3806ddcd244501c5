"""Command line: parses arguments and dispatches to the study and review layers."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import UserError
from hpo.network import exposure_warning

if TYPE_CHECKING:
    from hpo.study._spec import StudySpec


def _checkpoint_dir(args: argparse.Namespace, storage_url: str) -> Path:
    from hpo.study._checkpoints import check_writable, resolve_checkpoint_dir

    root = resolve_checkpoint_dir(args.checkpoint_dir, storage_url)
    check_writable(root)
    return root


def _slots(args: argparse.Namespace, raw_spec: dict) -> list:
    from hpo.worker._pool import plan_slots

    gpus = args.gpus.split(",") if args.gpus else None
    return plan_slots(gpus, args.trials_per_gpu, args.workers, raw_spec)


def _create(args: argparse.Namespace) -> int:
    from hpo.storage._backends import redact, resolve_url
    from hpo.study._spec import load_spec
    from hpo.worker._launch import create_or_resume

    spec = load_spec(args.spec)
    url = resolve_url(args.storage)
    study = create_or_resume(spec, url, args.study_name or spec.name)
    print(f"study {study.study_name!r} is ready in {redact(url)}; join it with: "
          f"hpo worker --study {study.study_name} --storage URL")
    return 0


def _launch(args: argparse.Namespace) -> int:
    from hpo.review._table import top_table
    from hpo.storage._backends import resolve_url
    from hpo.study._spec import load_spec
    from hpo.worker._launch import check_trackers, launch

    spec = _stall_timeout(load_spec(args.spec), args)
    check_trackers(spec, args.track)
    url = resolve_url(args.storage)
    study, status = launch(
        spec, url, args.study_name or spec.name, _slots(args, dict(spec.raw)),
        checkpoint_dir=_checkpoint_dir(args, url), n_trials=args.n_trials, timeout=args.timeout,
        stop=args.stop, track=args.track,
    )
    print(f"\nTop 5 of study {study.study_name!r}:")
    print(top_table(study, spec.metric, 5))
    return status


def _stall_timeout(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    """The spec with ``--stall-timeout`` in place of its own, when the command gives one."""
    if args.stall_timeout is None:
        return spec
    return dataclasses.replace(spec, liveness=dataclasses.replace(
        spec.liveness, stall_timeout=args.stall_timeout))


def _worker(args: argparse.Namespace) -> int:
    from hpo.storage._backends import open_storage, release, resolve_url
    from hpo.study._spec import load_spec_from_study
    from hpo.worker._launch import check_budget, check_data_of, check_trackers
    from hpo.worker._pool import run_pool

    url = resolve_url(args.storage)
    _, spec = load_spec_from_study(storage := open_storage(url), url, args.study)
    spec = _stall_timeout(spec, args)
    release(storage)  # the pool opens its own
    check_budget(spec, args.n_trials)
    check_data_of(spec)
    check_trackers(spec, args.track)
    slots = _slots(args, dict(spec.raw))
    return run_pool(url, args.study, slots, checkpoint_dir=_checkpoint_dir(args, url),
                    liveness=spec.liveness, n_trials=args.n_trials or spec.n_trials,
                    timeout=args.timeout, stop=args.stop, track=args.track)


def _status(args: argparse.Namespace) -> int:
    from hpo.review._status import studies_table, study_status
    from hpo.storage._backends import find_study, open_storage, resolve_url

    url = resolve_url(args.storage)
    storage = open_storage(url, must_exist=True)
    if args.study:
        find_study(storage, url, args.study)  # a clear error for an unknown study
        print(study_status(storage, args.study))
    else:
        print(studies_table(storage))
    return 0


def _repair(args: argparse.Namespace) -> int:
    from hpo.storage._repair import repair_journal

    print(repair_journal(Path(args.storage)))
    return 0


def _proxy(args: argparse.Namespace) -> int:
    from hpo.storage._backends import redact, resolve_url, run_proxy

    url = resolve_url(args.storage)
    print(f"[hpo] gRPC storage proxy for {redact(url)} on {args.host}:{args.port}; workers use "
          f"--storage grpc://{args.host}:{args.port}", file=sys.stderr, flush=True)
    warning = exposure_warning(args.host, args.port, "the gRPC storage proxy",
                               "read and write every study in the storage")
    if warning:
        print(warning, file=sys.stderr, flush=True)
    run_proxy(url, args.host, args.port)
    return 0


def _open_study(args: argparse.Namespace, name: str):
    """(study, storage URL) for a review command, which also reads plain Optuna studies;
    unknown studies and storages fail clearly, and nothing is created."""
    from hpo.storage._backends import find_study, open_storage, resolve_url

    url = resolve_url(args.storage)
    return find_study(open_storage(url, must_exist=True), url, name), url


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write ({e.strerror})") from None
    print(f"wrote {out}", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    from hpo.review._evidence import gather
    from hpo.review._render import to_html, to_json, to_markdown, to_text
    from hpo.review._report import assemble
    from hpo.storage._backends import redact

    study, url = _open_study(args, args.study)
    report = assemble(evidence := gather(study, redact(url), args.top))
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    render = {"text": to_text, "markdown": to_markdown, "json": to_json}
    _write(to_html(report, evidence, out) if args.format == "html"
           else render[args.format](report), args.out)
    return 0


def _compare(args: argparse.Namespace) -> int:
    import json

    from hpo.review._compare import compare_tables, compare_text
    from hpo.review._report import build_report
    from hpo.storage._backends import redact

    opened = [_open_study(args, name) for name in args.studies]
    reports = [build_report(study, redact(url)) for study, url in opened]
    if args.format == "json":
        tables = [{"title": t, "headers": h, "rows": r} for t, h, r in compare_tables(reports)]
        _write(json.dumps(tables, indent=2) + "\n", args.out)
    else:
        _write(compare_text(reports, markdown=args.format == "markdown"), args.out)
    return 0


def _export(args: argparse.Namespace) -> int:
    from hpo.review._export import export_study
    from hpo.storage._backends import redact

    study, url = _open_study(args, args.study)
    paths = export_study(study, redact(url), args.top, args.format, Path(args.out))
    for path in paths:
        print(path)
    if len(paths) < args.top:
        print(f"[hpo] only {len(paths)} complete trial(s) to export; pruned trials are never "
              "exported (their metric is partial)", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from hpo.review._retrain import retrain

    return retrain(args.file, args.seeds, args.verify, args.tolerance)


def _replicate(args: argparse.Namespace) -> int:
    from hpo.review._render import to_text
    from hpo.review._report import build_report
    from hpo.storage._backends import open_storage, redact, release, resolve_url
    from hpo.study._replicate import enqueue_replicates
    from hpo.study._spec import load_spec_from_study
    from hpo.worker._launch import check_trackers
    from hpo.worker._pool import run_pool

    url = resolve_url(args.storage)
    study, spec = load_spec_from_study(storage := open_storage(url), url, args.study)
    spec = _stall_timeout(spec, args)
    check_trackers(spec, args.track)
    queued = enqueue_replicates(study, args.top, args.seeds, spec.base.seed)
    release(storage)  # the pool opens its own; the report below reopens it
    print(f"[hpo] {queued} replicate trial(s) queued", file=sys.stderr)
    slots = _slots(args, dict(spec.raw))
    # The budget is met already: the workers run the queued replicates and stop.
    status = run_pool(url, args.study, slots, checkpoint_dir=_checkpoint_dir(args, url),
                      liveness=spec.liveness, n_trials=1, timeout=args.timeout, stop=args.stop,
                      shown_budget=spec.n_trials, track=args.track)
    print(to_text(build_report(study, redact(url), args.top), only=("replicates",)))
    return status


def _dashboard(args: argparse.Namespace) -> int:
    from hpo.review._dashboard import serve_dashboard
    from hpo.storage._backends import open_storage, redact, resolve_url
    from hpo.study._checkpoints import artifact_folder, resolve_checkpoint_dir

    url = resolve_url(args.storage)
    storage = open_storage(url, must_exist=True)
    root = resolve_checkpoint_dir(args.checkpoint_dir, url)
    warning = exposure_warning(args.host, args.port, "optuna-dashboard",
                               "read every study in the storage and its trials' artifacts")
    serve_dashboard(storage, artifact_folder(root), args.host, args.port,
                    announce=f"[hpo] optuna-dashboard for {redact(url)} on "
                             f"http://{args.host}:{args.port}/"
                             + (f"\n{warning}" if warning else ""))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _packing(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _trackers(value: str) -> str:
    from hpo.study._tracking import tracker_names

    try:
        return tracker_names(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="Optuna storage URL, journal file or grpc://HOST:PORT "
                                     "(default: $HPO_STORAGE, else hpo.journal)")


def _run_args(p: argparse.ArgumentParser, budget: bool = True) -> None:
    _storage_arg(p)
    p.add_argument("--workers", type=_positive_int,
                   help="worker processes (CPU: default 1; GPUs: round-robin over them)")
    p.add_argument("--gpus", help="GPU ids to use, e.g. 0,1 (default: every visible GPU)")
    p.add_argument("--trials-per-gpu", type=_packing, default=1,
                   help="concurrent trial processes per GPU, or auto (measured) (default: 1)")
    if budget:
        p.add_argument("--n-trials", type=_positive_int,
                       help="total finished trials (default: the spec's study.n_trials)")
    p.add_argument("--timeout", type=_positive_float,
                   help="seconds before workers start no new trial")
    p.add_argument("--checkpoint-dir", help="checkpoint store reachable by all workers "
                   "(default: $HPO_CHECKPOINT_DIR, else hpo-checkpoints beside the storage)")
    p.add_argument("--track", type=_trackers, default=os.environ.get("HPO_TRACK") or None,
                   help="copy every trial's run to these trackers too, beside the spec's "
                        "[track]: mlflow, tensorboard, or both comma-separated (default: "
                        "$HPO_TRACK)")
    p.add_argument("--stall-timeout", type=_positive_float,
                   help="seconds without an optimizer step before a running trial counts as "
                        "stalled: failed, queued to resume, its worker replaced (default: the "
                        "spec's study.stall_timeout, else automatic: 10x the trial's longest "
                        "gap between steps, at least 300)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo", description="Hyperparameter optimization of ResNet training recipes."
    )
    from hpo import __version__

    parser.add_argument("--version", action="version", version=f"hpo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _study_commands(sub)
    _review_commands(sub)
    return parser


def _study_commands(sub: Any) -> None:
    """Commands that create studies, run workers and look after storages."""
    p = sub.add_parser("launch",
                       help="create or resume a study and run local workers to its budget")
    p.add_argument("spec", help="study spec (TOML), e.g. studies/quickstart.toml")
    p.add_argument("--study-name", help="study name (default: the spec's study.name)")
    _run_args(p)
    p.set_defaults(func=_launch)

    p = sub.add_parser("create", help="create a study from a spec, for workers to join")
    p.add_argument("spec", help="study spec (TOML)")
    p.add_argument("--study-name", help="study name (default: the spec's study.name)")
    _storage_arg(p)
    p.set_defaults(func=_create)

    p = sub.add_parser("worker", help="join an existing study and run trials to its budget")
    p.add_argument("--study", required=True, help="study name")
    _run_args(p)
    p.set_defaults(func=_worker)

    p = sub.add_parser("status", help="studies, trials by state, running trials")
    p.add_argument("--study", help="show this study's running trials")
    _storage_arg(p)
    p.set_defaults(func=_status)

    p = sub.add_parser("repair", help="recover a journal file with damaged lines (keeps a "
                       "backup)")
    p.add_argument("--storage", required=True, help="the journal file")
    p.set_defaults(func=_repair)

    p = sub.add_parser("proxy", help="serve the storage to workers over gRPC")
    _storage_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_positive_int, default=13000, help="port (default: 13000)")
    p.set_defaults(func=_proxy)


def _review_commands(sub: Any) -> None:
    """Commands that read studies (and retrain what they found)."""
    p = sub.add_parser("report", help="top configurations, factor tables, compute, curves")
    p.add_argument("study", help="study name")
    _storage_arg(p)
    p.add_argument("--top", type=_positive_int, default=5,
                   help="configurations to list (default: 5)")
    p.add_argument("--format", choices=("text", "markdown", "json", "html"), default="text",
                   help="text, markdown, json (hpo/review/report.schema.json) or html (one "
                        "page, PNG figures beside it) (default: text)")
    p.add_argument("--out", help="write here instead of standard output")
    p.set_defaults(func=_report)

    p = sub.add_parser("compare", help="factor tables of several studies side by side")
    p.add_argument("studies", nargs="+", help="study names")
    _storage_arg(p)
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                   help="output format (default: text)")
    p.add_argument("--out", help="write here instead of standard output")
    p.set_defaults(func=_compare)

    p = sub.add_parser("export", help="the best configurations as files to retrain")
    p.add_argument("study", help="study name")
    _storage_arg(p)
    p.add_argument("--top", type=_positive_int, default=1,
                   help="configurations to export (default: 1)")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml",
                   help="file format (default: yaml)")
    p.add_argument("--out", default="exports", help="directory (default: exports)")
    p.set_defaults(func=_export)

    p = sub.add_parser("train", help="retrain an exported configuration (no study needed)")
    p.add_argument("file", help="a file written by hpo export")
    p.add_argument("--seeds", type=_positive_int, default=1,
                   help="train with seeds seed, seed+1, ... (default: 1)")
    p.add_argument("--verify", action="store_true",
                   help="exit 1 unless the first seed reproduces the exported metric")
    p.add_argument("--tolerance", type=float,
                   help="allowed difference (default: 0 for CPU to CPU, else 0.01)")
    p.set_defaults(func=_train)

    p = sub.add_parser("replicate", help="retrain the top configurations with new seeds")
    p.add_argument("study", help="study name")
    p.add_argument("--top", type=_positive_int, default=3,
                   help="configurations to replicate (default: 3)")
    p.add_argument("--seeds", type=_positive_int, default=3,
                   help="new seeds per configuration (default: 3)")
    _run_args(p, budget=False)
    p.set_defaults(func=_replicate)

    p = sub.add_parser("dashboard", help="optuna-dashboard with trial notes and figures")
    _storage_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_positive_int, default=8080, help="port (default: 8080)")
    p.add_argument("--checkpoint-dir", help="checkpoint store whose artifacts/ to serve")
    p.set_defaults(func=_dashboard)


# Commands that run workers: they turn SIGINT/SIGTERM into a flag before anything slow runs.
_RUNS = ("launch", "worker", "replicate")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Nothing hpo writes (journal, checkpoints, exports, figures) is writable by others, even
    # under a permissive umask: a writable checkpoint or journal is a way into every worker.
    os.umask(os.umask(0) | 0o002)
    args.stop = None
    if args.command in _RUNS:
        from hpo.worker._signals import StopFlag

        args.stop = StopFlag()
        args.stop.install()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # hpo prints its own progress
    try:
        return args.func(args)
    except UserError as e:
        print(f"hpo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
