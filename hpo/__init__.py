"""hpo: hyperparameter optimization of ResNet training recipes.

Layers, imported one way only:

- :mod:`hpo.training` trains one resolved :class:`~hpo.training.TrainConfig` and knows nothing
  of Optuna or storage;
- :mod:`hpo.study` turns Optuna trials into configs (spec -> search space -> objective ->
  workers -> storage);
- :mod:`hpo.review` reads finished studies (tables, reports, exports);
- :mod:`hpo.cli` parses arguments and dispatches.
"""

__version__ = "0.1.0"
