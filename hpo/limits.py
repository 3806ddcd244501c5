"""Thresholds that the training core applies and the review layer quotes, kept in one place
(this module imports nothing, so reading them costs neither torch nor optuna)."""

# The stem's gradient norm over the last residual stage's: below VANISHING the gradient
# vanishes on its way down through the blocks, above EXPLODING it explodes.
VANISHING = 1e-2
EXPLODING = 1e2
