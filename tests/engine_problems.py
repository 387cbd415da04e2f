"""The engines' test problem: a TrainingProblem on given data with the paper's optimizer
(Adam 1e-3, sigma2 = 1) and fixed shuffle and noise seeds, shared by the engine, training
and averaging tests."""

from __future__ import annotations

from collapse_spectroscopy.training.engines import TrainingProblem


def problem(model, x, beta, average="none", horizon=1, *, x_val=None, batch_size=256):
    """``model`` trained on ``x`` at ``beta``, validated on ``x_val`` (default ``x``);
    ``average`` and ``horizon`` as ``training.average`` and its horizon in updates."""
    return TrainingProblem(
        model=model,
        x_train=x,
        x_val=x if x_val is None else x_val,
        beta=beta,
        sigma2=1.0,
        learning_rate=1e-3,
        batch_size=batch_size,
        shuffle_seed=0,
        noise_seed=0,
        average=average,
        average_horizon=horizon,
    )
