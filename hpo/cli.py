"""Command line: parses arguments and dispatches to the study and review layers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hpo.errors import UserError


def _launch(args: argparse.Namespace) -> int:
    from hpo.review import top_table
    from hpo.study import launch, load_spec, resolve_url

    spec = load_spec(args.spec)
    study, status = launch(
        spec, resolve_url(args.storage), args.study_name or spec.name,
        workers=args.workers, n_trials=args.n_trials, timeout=args.timeout,
    )
    print(f"\nTop 5 of study {study.study_name!r}:")
    print(top_table(study, spec.metric, 5))
    return status


def _worker(args: argparse.Namespace) -> int:
    from hpo.study import resolve_url, run_worker

    run_worker(resolve_url(args.storage), args.study, n_trials=args.n_trials,
               timeout=args.timeout)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo", description="Hyperparameter optimization of ResNet training recipes."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    storage_help = "Optuna storage URL or journal file (default: $HPO_STORAGE, else hpo.journal)"

    p = sub.add_parser("launch",
                       help="create or resume a study and run local workers to its budget")
    p.add_argument("spec", help="study spec (TOML), e.g. studies/quickstart.toml")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--study-name", help="study name (default: the spec's study.name)")
    p.add_argument("--workers", type=_positive_int, default=1, help="local worker processes")
    p.add_argument("--n-trials", type=_positive_int,
                   help="total finished trials (default: the spec's study.n_trials)")
    p.add_argument("--timeout", type=_positive_float,
                   help="seconds before workers start no new trial")
    p.set_defaults(func=_launch)

    p = sub.add_parser("worker", help="join an existing study and run trials to its budget")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--n-trials", type=_positive_int, help="total finished trials")
    p.add_argument("--timeout", type=_positive_float, help="seconds before starting no new trial")
    p.set_defaults(func=_worker)
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
