"""Why a mode just below its threshold stays collapsed: train one linear scan point from
the default initialization or from the analytic equilibrium, and follow the per-mode
signal fraction of the tail modes against the equilibrium value (issue 12;
docs/science.md §5.4, §10.1).

    python scripts/tail_escape.py results/worldclim/data/prepared.npz --init default
    python scripts/tail_escape.py results/worldclim/data/prepared.npz --init equilibrium

Two questions it separates. Started at the equilibrium, does minibatch noise hold the mode
there (then the collapsed mode seen from the default start is an escape too slow for the
budget) or push it down (then noise acts as an extra temperature on that mode and no
budget fixes it at this batch size and learning rate)? Started from the default, does the
mode grow within the budget once the noise is smaller (``--batch-size`` up or
``--learning-rate`` down)?

The header gives each followed mode's rate of leaving collapse under gradient flow
(:func:`collapse_spectroscopy.analysis.equilibrium.escape_rate`): their ratios predict the ratios of
the escape times from the default start. Each line: updates, the validation loss, and for
each mode of ``--modes`` its measured signal fraction on the evaluation split
(``modes.measure_modes``) and the equilibrium's (``equilibrium.signal_fraction`` of the
training spectrum). The numba engine, float64.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from collapse_spectroscopy.analysis import equilibrium, modes, pca
from collapse_spectroscopy.analysis.temperature import temperature_to_beta, total_variance
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.store.prepared import load_prepared
from collapse_spectroscopy.training.engines import make_engine
from collapse_spectroscopy.training.scan_point import TrainConfig, seed_streams, training_problem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("prepared", help="a run's data/prepared.npz")
    p.add_argument("--temperature", type=float, default=1e-6)
    p.add_argument("--init", choices=["default", "equilibrium"], default="default")
    p.add_argument("--updates", type=int, default=1_000_000)
    p.add_argument("--every", type=int, default=100_000, help="updates between lines")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--latents", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-split", default="test")
    p.add_argument("--modes", default="16,17,18", help="1-based PCA modes to follow")
    args = p.parse_args(argv)

    ds = load_prepared(args.prepared)
    x_train, x_eval = ds.x_train.astype(np.float64), ds.split(args.eval_split).astype(np.float64)
    follow = [int(k) - 1 for k in args.modes.split(",")]
    basis = pca.pca_basis(x_train)
    mean = modes.training_mean(x_train)
    cov = np.cov(x_train, rowvar=False, bias=True)
    lam = np.clip(np.sort(np.linalg.eigvalsh(cov))[::-1], 0.0, None)
    expected = equilibrium.signal_fraction(lam / lam.sum(), args.temperature)

    V = total_variance(x_train)
    beta = temperature_to_beta(args.temperature, V, 1.0)
    s_init, s_shuffle, s_noise = seed_streams(args.seed)
    model = LinearVAE(
        x_train.shape[1],
        args.latents,
        generator=torch.Generator().manual_seed(s_init),
        dtype=torch.float64,
    )
    if args.init == "equilibrium":
        model.load_numpy_params(
            equilibrium.equilibrium_parameters(mean, cov, args.temperature, args.latents)
        )
    config = TrainConfig(batch_size=args.batch_size, learning_rate=args.learning_rate)
    problem = training_problem(
        model, x_train, ds.x_val.astype(np.float64), beta, 1.0, config, s_shuffle, s_noise
    )
    engine = make_engine("numba", problem)

    head = "  ".join(f"rho{k + 1}(eq {expected[k]:.3f})" for k in follow)
    rate = equilibrium.escape_rate(lam / lam.sum(), args.temperature, V)
    rates = ", ".join(f"mode {k + 1}: {rate[k]:.3g}" for k in follow)
    print(
        f"# T={args.temperature:g} init={args.init} batch={args.batch_size} "
        f"lr={args.learning_rate:g} seed={args.seed}\n"
        f"# escape rate from collapse under gradient flow (equilibrium.escape_rate): {rates}\n"
        f"# updates  val_loss  {head}"
    )
    done, t0 = 0, time.perf_counter()
    while True:
        totals = modes.measure_modes(
            engine.sync_model().numpy_params(), x_eval, x_train, basis, x_train_mean=mean
        )
        loss = engine.validation_loss()[0]
        rhos = "  ".join(f"{totals.signal_fraction[k]:14.4f}" for k in follow)
        print(f"{done:9d}  {loss:.6e}  {rhos}", flush=True)
        if done >= args.updates:
            break
        n = min(args.every, args.updates - done)
        engine.run_window(n)
        done += n
    print(f"# {done} updates in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
