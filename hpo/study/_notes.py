"""What a finished trial leaves for people: a Markdown note and a learning-curve figure.

optuna-dashboard shows both on the trial's page (the note through ``save_note``, the figure
through the artifact store); they are written when the trial ends, by the worker that ran it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna

from hpo import record


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


def curve_png(path: Path, number: int, curve: dict[str, list[float]]) -> None:
    """Validation accuracy and losses per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(curve["val_accuracy"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    ax1.plot(epochs, curve["val_accuracy"], marker="o")
    ax1.set(title=f"trial {number}: validation accuracy", xlabel="epoch")
    ax2.plot(epochs, curve["train_loss"], label="train")
    ax2.plot(epochs, curve["val_loss"], label="validation")
    ax2.set(title="loss", xlabel="epoch")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gradients_png(path: Path, number: int, gradients: dict[str, Any]) -> None:
    """Per-stage gradient norms over epochs, log scale, one line per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(gradients["grad_norm"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for i, stage in enumerate(gradients["stages"]):
        ax.plot(epochs, [row[i] for row in gradients["grad_norm"]], marker=".", label=stage)
    ax.set_yscale("log")
    ax.set(title=f"trial {number}: gradient norm per stage", xlabel="epoch",
           ylabel="gradient L2 norm (RMS over steps)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def attach(trial: optuna.Trial, store: optuna.artifacts.FileSystemArtifactStore | None,
           config: dict[str, Any], curve: dict[str, list[float]], stop_reason: str,
           metric: str, about: str = "", gradients: dict[str, Any] | None = None) -> None:
    """Saves the note and, with an artifact store, uploads the curve and gradient figures."""
    import warnings

    from optuna_dashboard import save_note

    save_note(trial, note_markdown(trial.number, config, curve, stop_reason, metric, about,
                                   gradients))
    if store is None or not curve["val_accuracy"]:
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
