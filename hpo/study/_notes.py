"""What a finished trial leaves for people: a Markdown note and a learning-curve figure.

optuna-dashboard shows both on the trial's page (the note through ``save_note``, the figure
through the artifact store); they are written when the trial ends, by the worker that ran it.
"""

from __future__ import annotations

import functools
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna

from hpo import record

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _shown(value: Any) -> Any:
    """Booleans as yes/no, as every hpo table prints them."""
    return ("yes" if value else "no") if isinstance(value, bool) else value


def lineage(user_attrs: dict[str, Any], retry_history: list[int]) -> str:
    """What the trial is beyond its recipe: a replicate (of which trial, which seed, its test
    accuracy) or a retry (of which trials, resumed from which epoch); empty otherwise."""
    if record.REPLICATE_OF in user_attrs:
        test = user_attrs.get(record.TEST_ACCURACY)
        return (f"**Replicate** of trial {user_attrs[record.REPLICATE_OF]}, seed "
                f"{user_attrs.get(record.REPLICATE_SEED)}: never pruned, not counted in the "
                f"study's budget; test accuracy {'-' if test is None else f'{test:.4f}'}\n\n")
    resumed = user_attrs.get(record.RESUMED_FROM_EPOCH)
    if record.PROMOTED_FROM in user_attrs:
        return (f"**Promoted**: continues paused trial {user_attrs[record.PROMOTED_FROM]}"
                + (f", resumed after epoch {resumed}" if resumed else ", started afresh (no "
                   "checkpoint was left)") + "\n\n")
    if retry_history:
        return (f"**Retry** of trial(s) {', '.join(map(str, retry_history))}"
                + (f", resumed after epoch {resumed}" if resumed else ", started afresh")
                + "\n\n")
    return ""


def flow_summary(gradients: dict[str, Any] | None) -> str:
    """One line on the gradient flow: the first-to-last ratio at the first and last epoch,
    any vanishing or exploding, and how far each stage's weights moved in the last epoch."""
    if not gradients:
        return "not measured (training.diagnostics = false)"
    ratios, states = gradients["ratio"], gradients["state"]
    flagged = [i + 1 for i, s in enumerate(states) if s]
    state = (f"{states[flagged[0] - 1]} from epoch {flagged[0]}" if flagged
             else "neither vanishing nor exploding")
    moved = ", ".join(f"{s} {u:.2g}" for s, u in zip(gradients["stages"],
                                                       gradients["update_ratio"][-1],
                                                       strict=True))
    return (f"stem/last-stage gradient ratio {ratios[0]:.3g} at epoch 1, {ratios[-1]:.3g} at "
            f"epoch {len(ratios)}: {state}; update/weight in the last epoch: {moved}")


def note_markdown(number: int, config: dict[str, Any], curve: dict[str, list[float]],
                  stop_reason: str, metric: str, about: str = "",
                  gradients: dict[str, Any] | None = None) -> str:
    """The trial's recipe, how its curve went, and why it stopped; ``about``: its lineage."""
    settings = {**config.get("optimizer_params", {}), **config.get("schedule_params", {})}
    rows = "\n".join(f"| {k} | {_shown(v)} |" for k, v in [
        ("optimizer", config.get("optimizer")), ("lr", config.get("lr")),
        ("weight decay", config.get("weight_decay")), ("schedule", config.get("schedule")),
        ("init", config.get("init")), ("zero-init residual", config.get("zero_init_residual")),
        ("no decay on BN/bias", config.get("no_decay_bn_bias")),
        *((k, v) for k, v in settings.items()),
        ("model", config.get("model", {}).get("name")), ("epochs", config.get("epochs")),
        ("batch size", config.get("batch_size")), ("seed", config.get("seed")),
    ])
    acc = curve.get("val_accuracy", [])
    summary = "no epoch finished"
    if acc:
        best = max(range(len(acc)), key=acc.__getitem__)
        summary = (f"{len(acc)} epochs; val accuracy {acc[0]:.4f} -> {acc[-1]:.4f} "
                   f"(best {acc[best]:.4f} at epoch {best + 1}); val loss "
                   f"{curve['val_loss'][0]:.4f} -> {curve['val_loss'][-1]:.4f}")
    return (f"## Trial {number}\n\n{about}| setting | value |\n|---|---|\n{rows}\n\n"
            f"**Curve:** {summary}\n\n**Gradient flow:** {flow_summary(gradients)}\n\n"
            f"**Stopped:** {stop_reason}\n\n**Metric:** {metric}\n")


@functools.cache
def _canvas(kind: Literal["losses", "norms"]) -> tuple[Figure, tuple[Axes, ...]]:
    """One figure of each kind per process, drawn again for every trial it ends.

    Why: building a figure (its axes' ticks) and fitting its layout cost twice the drawing, and
    a worker draws two figures a trial: 0.7 s of CPU a trial against 0.26 s reused, on the
    2-core machine, where a short trial trains in less. Margins are fixed for the same reason
    (``tight_layout`` measured every label's extent each time). A worker draws one figure at a
    time: :data:`_DRAWING` holds the MLflow tracker's thread back while the trial's own are
    drawn, and the other way round.
    """
    from matplotlib import ticker
    from matplotlib.figure import Figure

    if kind == "losses":
        fig = Figure(figsize=(8, 3), dpi=100)
        axes = tuple(fig.subplots(1, 2))
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.9, wspace=0.22)
    else:
        fig = Figure(figsize=(6, 3.5), dpi=100)
        axes = (fig.subplots(),)
        fig.subplots_adjust(left=0.14, right=0.97, bottom=0.14, top=0.91)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("gradient L2 norm (RMS over steps)")
        # plain-text tick labels: the default's mathtext (10^-2) is parsed anew on each draw
        axes[0].yaxis.set_major_formatter(ticker.LogFormatter())
        axes[0].yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))
    for ax in axes:  # epochs are whole numbers, also when a pruned trial ran one or two
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
    return fig, axes


def _titled(ax: Axes, title: str) -> None:
    """The title at a fixed height: placed automatically, it is placed anew on every draw
    from the extents of everything above the axes (a fifth of the figure's drawing time)."""
    ax.set_title(title, y=1.0)


def _save(fig: Figure, path: Path) -> None:
    """A PNG at zlib's fastest level: the same pixels, a few kB larger, half the encoding."""
    fig.savefig(path, pil_kwargs={"compress_level": 1})


def _cleared(kind: Literal["losses", "norms"]) -> tuple[Figure, tuple[Axes, ...]]:
    """The kind's figure without the previous trial's lines and legend."""
    fig, axes = _canvas(kind)
    for ax in axes:
        for line in list(ax.lines):
            line.remove()
        if (legend := ax.get_legend()) is not None:
            legend.remove()
        ax.relim()
    return fig, axes


_DRAWING = threading.Lock()


def curve_png(path: Path, number: int, curve: dict[str, list[float]]) -> None:
    """Validation accuracy and losses per epoch, as a PNG."""
    with _DRAWING:
        _curve_png(path, number, curve)


def _curve_png(path: Path, number: int, curve: dict[str, list[float]]) -> None:
    fig, (ax1, ax2) = _cleared("losses")
    epochs = range(1, len(curve["val_accuracy"]) + 1)
    ax1.plot(epochs, curve["val_accuracy"], marker="o", color="C0")
    _titled(ax1, f"trial {number}: validation accuracy")
    ax2.plot(epochs, curve["train_loss"], label="train", color="C0")
    ax2.plot(epochs, curve["val_loss"], label="validation", color="C1")
    _titled(ax2, "loss")
    ax2.legend()
    _save(fig, path)


def gradients_png(path: Path, number: int, gradients: dict[str, Any]) -> None:
    """Per-stage gradient norms over epochs, log scale, one line per stage."""
    with _DRAWING:
        _gradients_png(path, number, gradients)


def _gradients_png(path: Path, number: int, gradients: dict[str, Any]) -> None:
    fig, (ax,) = _cleared("norms")
    epochs = range(1, len(gradients["grad_norm"]) + 1)
    for i, stage in enumerate(gradients["stages"]):
        ax.plot(epochs, [row[i] for row in gradients["grad_norm"]], marker=".", label=stage,
                color=f"C{i % 10}")
    _titled(ax, f"trial {number}: gradient norm per stage")
    ax.legend(fontsize=7)
    _save(fig, path)


def attach(trial: optuna.Trial, store: optuna.artifacts.FileSystemArtifactStore | None,
           config: dict[str, Any], curve: dict[str, list[float]], stop_reason: str,
           metric: str, about: str = "", gradients: dict[str, Any] | None = None) -> None:
    """Saves the note and, with an artifact store, uploads the curve and gradient figures.

    Figures only for a trial that ran two epochs or more: one epoch's "curve" is a single
    point, whose numbers the note already gives (and the dashboard's own chart of intermediate
    values shows). Most trials a pruner stops at its first rung are such; drawing their two
    PNGs cost about as much CPU as training them, on the digits data.
    """
    import warnings

    from optuna_dashboard import save_note

    save_note(trial, note_markdown(trial.number, config, curve, stop_reason, metric, about,
                                   gradients))
    if store is None or len(curve["val_accuracy"]) < 2:
        return
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"curve-trial-{trial.number}.png"]
        curve_png(paths[0], trial.number, curve)
        if gradients:
            paths.append(Path(tmp) / f"gradients-trial-{trial.number}.png")
            gradients_png(paths[1], trial.number, gradients)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for path in paths:
                optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path),
                                                 study_or_trial=trial)
