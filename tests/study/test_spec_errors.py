"""Every malformed spec gives one line naming the file, the key and what is allowed; exit 2."""

import importlib.util
from pathlib import Path

import pytest

from hpo.cli import main
from tests.conftest import REPO, run_hpo

VALID = """
[study]
name = "x"
n_trials = 2
[model]
name = "resnet8"
[training]
epochs = 2
[search]
optimizer = ["sgd", "adam"]
"""

# (case, spec text, words the one-line error must contain)
CASES = [
    ("toml-syntax", "[study\nname = 1", ["TOML syntax error", "line 1"]),
    ("empty-file", "   \n", ["empty spec"]),
    ("unknown-section", VALID + "[optimizer]\nname = 'sgd'\n", ["optimizer: unknown key",
                                                               "allowed: study, sampler"]),
    ("unknown-key", VALID.replace("n_trials", "n_trial"), ["study.n_trial: unknown key",
                                                          "n_trials"]),
    ("wrong-type", VALID.replace("n_trials = 2", 'n_trials = "2"'),
     ["study.n_trials: must be an integer", "a string"]),
    ("empty-choice", VALID.replace('["sgd", "adam"]', "[]"), ["search.optimizer: empty choice"]),
    ("low-above-high", VALID + "lr = {low = 1.0, high = 0.1}\n",
     ["search.lr.low: must be below high"]),
    ("log-low-not-positive", VALID + "weight_decay = {low = 0.0, high = 1e-3, log = true}\n",
     ["search.weight_decay.low: must be > 0 for a log range"]),
    ("unknown-optimizer", VALID.replace('"adam"]', '"adamm"]'),
     ["search.optimizer[1]: unknown value 'adamm'", "allowed: sgd, nesterov, adam"]),
    ("unknown-schedule", VALID + 'schedule = "linear"\n',
     ["search.schedule: unknown value 'linear'", "cosine"]),
    ("unknown-init", VALID + 'init = ["he"]\n', ["search.init[0]: unknown value 'he'",
                                                "kaiming_normal"]),
    ("unknown-model", VALID.replace('"resnet8"', '"resnet9"'),
     ["model.name: unknown model 'resnet9'", "resnet20"]),
    ("setting-the-model-ignores", VALID.replace('"resnet8"', '"resnet18"\nshortcut = "B"'),
     ["model.shortcut: resnet18 has no shortcut setting", "CIFAR ResNets"]),
    ("unknown-dataset", VALID + '[data]\nname = "mnist"\n',
     ["data.name: unknown value 'mnist'", "digits, synthetic, cifar10"]),
    ("negative-epochs", VALID.replace("epochs = 2", "epochs = -3"),
     ["training.epochs: must be >= 1, got -3"]),
    ("track-not-a-bool", VALID + '[track]\nmlflow = "yes"\n',
     ["track.mlflow: must be true or false"]),
    ("zero-stall-timeout", VALID.replace("n_trials = 2", "n_trials = 2\nstall_timeout = 0"),
     ["study.stall_timeout: must be > 0, got 0"]),
    ("unknown-sampler", VALID + '[sampler]\nname = "bayes"\n',
     ["sampler.name: unknown value 'bayes'", "tpe, random, gp, cmaes, qmc, grid"]),
    ("sampler-option", VALID + '[sampler]\nname = "random"\nn_startup_trials = 3\n',
     ["sampler.n_startup_trials: unknown key", "allowed: none"]),
    ("pruner-option", VALID + '[pruner]\nname = "median"\npercentile = 30.0\n',
     ["pruner.percentile: unknown key", "n_warmup_steps"]),
    ("grid-log-range", VALID + 'lr = {low = 1e-3, high = 1.0, log = true}\n'
     '[sampler]\nname = "grid"\n', ["search.lr: the grid sampler needs", "sgd.lr"]),
    ("setting-not-of-family", VALID + "[search.adam]\nmomentum = 0.9\n",
     ["search.adam.momentum: unknown key", "beta1"]),
    ("setting-out-of-bounds", VALID + "momentum = [0.9, 1.5]\n",
     ["search.momentum[1]: must be in [0, 1), got 1.5"]),
    ("missing-name", VALID.replace('name = "x"\n', ""), ["study.name: is required"]),
    ("direction-mismatch", VALID.replace("n_trials = 2", 'n_trials = 2\ndirection = "minimize"'),
     ["study.direction: val_accuracy is always maximized"]),
    ("range-for-an-axis", VALID.replace('["sgd", "adam"]', "{low = 1, high = 2}"),
     ["search.optimizer: must be a single value or a list of choices"]),
    ("patience-delta", VALID + '[pruner]\nname = "none"\nmin_delta = 0.1\n',
     ["pruner.min_delta: only applies with pruner.patience"]),
    ("data-option-of-other-dataset", VALID + '[data]\nname = "digits"\nimage_size = 32\n',
     ["data.image_size: unknown key"]),
]


@pytest.mark.parametrize("case,text,words", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_gives_one_clear_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, text: str, words: list[str]
) -> None:
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    assert main(["launch", str(path), "--storage", str(tmp_path / "s.journal")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hpo: error: {path}: ")
    for w in words:
        assert w in lines[0]


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such spec file" in capsys.readouterr().err


def test_sampler_whose_package_is_missing_is_refused_at_load_time(tmp_path: Path) -> None:
    """A real process in which `import cmaes` fails, as on a machine without the package."""
    shadow = tmp_path / "shadow" / "cmaes"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named cmaes')\n")
    spec = tmp_path / "cma.toml"
    spec.write_text(VALID + '[sampler]\nname = "cmaes"\n')
    result = run_hpo("launch", str(spec), cwd=tmp_path,
                     env={"PYTHONPATH": f"{shadow.parent}:{REPO}"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"hpo: error: {spec}: sampler.name: 'cmaes' needs the Python package 'cmaes', which "
        "does not import; install it or choose another sampler")
    assert not (tmp_path / "hpo.journal").exists()  # refused before any study was created


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None,
                    reason="the track extra is installed here")
def test_a_tracker_whose_package_is_missing_is_refused_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tracked.toml"
    spec.write_text(VALID)
    assert main(["launch", str(spec), "--storage", str(tmp_path / "s.journal"),
                 "--track", "mlflow"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hpo: error: {spec}: track.mlflow: the Python package 'mlflow' does not import; "
        "install hpo's 'track' extra (pip install 'hpo[track]') or turn the tracker off")
    assert not (tmp_path / "s.journal").exists()
    with pytest.raises(SystemExit) as refused:  # argparse's refusal
        main(["launch", str(spec), "--track", "wandb"])
    assert refused.value.code == 2
    assert "argument --track: unknown tracker 'wandb'; allowed: mlflow, tensorboard" in \
        capsys.readouterr().err


def test_bad_spec_through_the_real_command_has_no_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(VALID.replace("epochs = 2", "epochs = 0"))
    result = run_hpo("launch", str(spec), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"hpo: error: {spec}: training.epochs: must be >= 1, got 0"


def test_every_shipped_spec_loads() -> None:
    from hpo.study._spec import load_spec

    specs = sorted((REPO / "studies").glob("*.toml"))
    assert {p.name for p in specs} >= {"quickstart.toml", "cifar10-resnet20.toml",
                                       "cifar10-resnet56.toml"}
    for path in specs:
        spec = load_spec(path)
        assert spec.n_trials > 0 and spec.base.epochs > 0
