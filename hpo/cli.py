"""Command line: parses arguments and dispatches to the study and review layers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hpo.errors import UserError


def _checkpoint_dir(args: argparse.Namespace, storage_url: str) -> Path:
    from hpo.study import CheckpointStore, resolve_checkpoint_dir

    root = resolve_checkpoint_dir(args.checkpoint_dir, storage_url)
    CheckpointStore(root, "").check_writable()
    return root


def _slots(args: argparse.Namespace) -> list:
    from hpo.study import plan_slots

    gpus = args.gpus.split(",") if args.gpus else None
    return plan_slots(gpus, args.trials_per_gpu, args.workers)


def _create(args: argparse.Namespace) -> int:
    from hpo.study import create_or_resume, load_spec, redact, resolve_url

    spec = load_spec(args.spec)
    url = resolve_url(args.storage)
    study = create_or_resume(spec, url, args.study_name or spec.name)
    print(f"study {study.study_name!r} is ready in {redact(url)}; join it with: "
          f"hpo worker --study {study.study_name} --storage URL")
    return 0


def _launch(args: argparse.Namespace) -> int:
    from hpo.review import top_table
    from hpo.study import launch, load_spec, resolve_url

    spec = load_spec(args.spec)
    url = resolve_url(args.storage)
    study, status = launch(
        spec, url, args.study_name or spec.name, _slots(args),
        checkpoint_dir=_checkpoint_dir(args, url), n_trials=args.n_trials, timeout=args.timeout,
    )
    print(f"\nTop 5 of study {study.study_name!r}:")
    print(top_table(study, spec.metric, 5))
    return status


def _worker(args: argparse.Namespace) -> int:
    from hpo.study import load_spec_from_study, open_storage, resolve_url, run_pool

    url = resolve_url(args.storage)
    _, spec = load_spec_from_study(open_storage(url), url, args.study)
    return run_pool(url, args.study, _slots(args), checkpoint_dir=_checkpoint_dir(args, url),
                    liveness=spec.liveness, n_trials=args.n_trials or spec.n_trials,
                    timeout=args.timeout)


def _status(args: argparse.Namespace) -> int:
    from hpo.review import studies_table, study_status
    from hpo.study import load_spec_from_study, open_storage, resolve_url

    url = resolve_url(args.storage)
    storage = open_storage(url)
    if args.study:
        load_spec_from_study(storage, url, args.study)  # a clear error for an unknown study
        print(study_status(storage, args.study))
    else:
        print(studies_table(storage))
    return 0


def _proxy(args: argparse.Namespace) -> int:
    from hpo.study import redact, resolve_url, run_proxy

    url = resolve_url(args.storage)
    print(f"[hpo] gRPC storage proxy for {redact(url)} on {args.host}:{args.port}; workers use "
          f"--storage grpc://{args.host}:{args.port}", file=sys.stderr, flush=True)
    run_proxy(url, args.host, args.port)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="Optuna storage URL, journal file or grpc://HOST:PORT "
                                     "(default: $HPO_STORAGE, else hpo.journal)")


def _run_args(p: argparse.ArgumentParser) -> None:
    _storage_arg(p)
    p.add_argument("--workers", type=_positive_int,
                   help="worker processes (CPU: default 1; GPUs: round-robin over them)")
    p.add_argument("--gpus", help="GPU ids to use, e.g. 0,1 (default: every visible GPU)")
    p.add_argument("--trials-per-gpu", type=_positive_int, default=1,
                   help="concurrent trial processes per GPU")
    p.add_argument("--n-trials", type=_positive_int,
                   help="total finished trials (default: the spec's study.n_trials)")
    p.add_argument("--timeout", type=_positive_float,
                   help="seconds before workers start no new trial")
    p.add_argument("--checkpoint-dir", help="checkpoint store reachable by all workers "
                   "(default: $HPO_CHECKPOINT_DIR, else hpo-checkpoints beside the storage)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo", description="Hyperparameter optimization of ResNet training recipes."
    )
    sub = parser.add_subparsers(dest="command", required=True)

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

    p = sub.add_parser("proxy", help="serve the storage to workers over gRPC")
    _storage_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_positive_int, default=13000, help="port")
    p.set_defaults(func=_proxy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # hpo prints its own progress
    try:
        return args.func(args)
    except UserError as e:
        print(f"hpo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
