"""Train one scan point on the GPU and on the CPU; compare observables and times.

    python benchmarks/gpu_vs_cpu.py [--updates 20000] [--temperature 0.01]

Same data (WorldClim-sized synthetic Gaussian: 19 features with a spectrum over four
decades, 32 latents, batch 256), same seed, same batches (the batch order is drawn on the
CPU for every device) -- but not the same noise (each device's generator has its own
stream) nor the same float rounding, so the two runs are two samples of one training
process: their observables agree to within the training noise, not bit for bit. The
script prints both times and the largest differences, and exits non-zero where they
exceed the tolerance (0.02 in rho; 2 % of the total variance in the truncated
distortions). Runs in well under 5 minutes. Without CUDA it says so and exits 0.

The batched case (``--points 1 4 16``, the default; ``--points`` alone skips it), for each
family of ``--kinds`` (default ``linear mlp``): on each device (the CPU, and CUDA where
present, there also with ``--cuda-graphs``), P points (other temperatures and seeds)
trained as one batched model against P separate single-point engines run one after the
other, ``--batched-updates`` updates each: updates/s per point and in all (P times that).
The separate engine is the one the batch follows: ``fast`` for the linear VAE, ``mlp_fast``
for the MLP VAE (WorldClim size: hidden ``--mlp-hidden``, default 64-64, GELU), and on CUDA
also ``mlp`` (``auto``'s engine there). First, on each device and for each family, a
float64 check that the batched engine follows the separate engines (3 points, 300
updates; ``batched_max_rel_diff`` for the linear VAE, ``batched_mlp_max_rel_diff`` for the
MLP VAE, exit non-zero above 1e-9), which runs the CUDA (and CUDA-graph) code paths that
the CPU test suite cannot. Without CUDA only the CPU part runs.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from collapse_spectroscopy.analysis import observables
from collapse_spectroscopy.analysis.temperature import temperature_to_beta, total_variance
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.models.mlp import MLPVAE
from collapse_spectroscopy.training.engines import TrainingProblem, make_engine
from collapse_spectroscopy.training.engines.batched import batched_engine
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point


def data(n=200_000, d=19, seed=0):
    rng = np.random.default_rng(seed)
    lam = np.geomspace(1.0, 1e-4, d)
    lam *= d / lam.sum()
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (rng.standard_normal((n, d)) * np.sqrt(lam)) @ q.T
    x = (x - x.mean(0)) / x.std(0)
    x = x.astype(np.float32)
    return x[: n // 2], x[n // 2 : 3 * n // 4], x[3 * n // 4 :]


def run(device, xtr, xva, xte, T, updates):
    cfg = TrainConfig(max_updates=updates, patience=updates, eval_every=1000, device=device)
    t0 = time.perf_counter()
    result = train_scan_point(xtr, xva, T, seed=0, latents=32, config=cfg)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    obs = observables.measure(result.model.numpy_params(), xte, xtr, seed=0)
    return elapsed, result, obs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=20_000)
    ap.add_argument("--temperature", type=float, default=0.01)
    ap.add_argument("--points", type=int, nargs="*", default=[1, 4, 16])
    ap.add_argument("--batched-updates", type=int, default=2000)
    ap.add_argument("--kinds", nargs="+", default=["linear", "mlp"], choices=["linear", "mlp"])
    ap.add_argument("--mlp-hidden", type=int, nargs="+", default=[64, 64])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    xtr, xva, xte = data()
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to compare (run this on a GPU machine)")
        return batched(["cpu"], xtr, args)
    ok = batched(["cuda", "cpu"], xtr, args)
    rows = {}
    for device in ("cuda", "cpu"):
        rows[device] = run(device, xtr, xva, xte, args.temperature, args.updates)
        t, r, _ = rows[device]
        print(
            f"{device:>4}: {t:7.1f} s, {r.updates_run / t:8.0f} updates/s, "
            f"best val loss {r.best_val_loss:.6g} at {r.best_update} ({r.engine} engine, "
            f"{torch.cuda.get_device_name() if device == 'cuda' else 'CPU, 1 thread'})"
        )
    g, c = rows["cuda"][2], rows["cpu"][2]
    d_rho = np.abs(g.per_latent["signal_fraction"] - c.per_latent["signal_fraction"]).max()
    d_dn = np.abs(g.truncated_distortion - c.truncated_distortion).max()
    active = int((c.per_latent["signal_fraction"] > 0.05).sum())
    print(
        f"active latents: cuda {int((g.per_latent['signal_fraction'] > 0.05).sum())}, cpu {active}"
    )
    print(f"max |rho_gpu - rho_cpu| = {d_rho:.4f}; max |Dn_gpu - Dn_cpu| = {d_dn:.5f}")
    print(f"speedup_gpu_vs_cpu={rows['cpu'][0] / rows['cuda'][0]:.2f}")
    return 0 if (d_rho < 0.02 and d_dn < 0.02 and ok == 0) else 1


def model(kind, d, seed, dtype, hidden=(64, 64)):
    g = torch.Generator().manual_seed(seed)
    if kind == "linear":
        return LinearVAE(d, 32, generator=g, dtype=dtype)
    return MLPVAE(d, 32, list(hidden), "gelu", generator=g, dtype=dtype)


def problems(x, points, device, dtype=torch.float32, T=0.01, batch_size=256, **arch):
    """``points`` scan points (temperatures over three decades, seeds 0..P-1) on ``x``;
    ``arch``: ``kind`` (default linear) and ``hidden`` of :func:`model`."""
    V = total_variance(x)
    kind = arch.get("kind", "linear")
    return [
        TrainingProblem(
            model=model(kind, x.shape[1], i, dtype, arch.get("hidden", (64, 64))).to(device),
            x_train=x,
            x_val=x[:1000],
            beta=temperature_to_beta(T * 10.0 ** (-(i % 3)), V, 1.0),
            sigma2=1.0,
            learning_rate=1e-3,
            batch_size=batch_size,
            shuffle_seed=10 + i,
            noise_seed=20 + i,
        )
        for i in range(points)
    ]


#: the single-point engine the batch of each family follows (the same batches and noise)
FOLLOWS = {"linear": "fast", "mlp": "mlp_fast"}


def timed(engine, updates, window=1000) -> float:
    t0 = time.perf_counter()
    for start in range(0, updates, window):
        assert np.isfinite(engine.run_window(min(window, updates - start))).all()
    return time.perf_counter() - t0  # run_window ends with a copy to the host: synced


def batched_max_rel_diff(x, device, cuda_graphs, kind="linear", hidden=(64, 64)) -> float:
    """float64, 3 points, 300 updates: the batched engine against the separate engines it
    follows (the largest relative difference of a batch loss)."""
    x = x[:3000].astype(np.float64)
    arch = dict(kind=kind, hidden=hidden)
    batch = batched_engine(
        problems(x, 3, device, torch.float64, batch_size=128, **arch), cuda_graphs=cuda_graphs
    )
    got = np.concatenate([batch.run_window(n) for n in (100, 37, 163)], axis=1)
    worst = 0.0
    for i, pr in enumerate(problems(x, 3, device, torch.float64, batch_size=128, **arch)):
        single = make_engine(FOLLOWS[kind], pr)
        ref = np.concatenate([single.run_window(n).copy() for n in (100, 37, 163)])
        worst = max(worst, float(np.max(np.abs(got[i] - ref) / np.abs(ref))))
    return worst


def batched(devices, x, args) -> int:
    """The batched case on each device for each family of ``args.kinds``; 0 when the
    batched engine follows its single-point engine."""
    if not args.points:
        return 0
    bad = 0
    for kind in args.kinds:
        arch = dict(kind=kind, hidden=tuple(args.mlp_hidden))
        for device in devices:
            for graphs in (False, True) if device == "cuda" else (False,):
                diff = batched_max_rel_diff(x, device, graphs, **arch)
                bad |= not diff < 1e-9
                key = "batched_max_rel_diff" if kind == "linear" else "batched_mlp_max_rel_diff"
                tag = f"{device}{' + CUDA graphs' if graphs else ''}"
                print(f"\n{kind} batched engine on {tag}: {key}={diff:.2e} (float64)")
                throughput(kind, device, graphs, x, args, arch)
    return int(bad)


def throughput(kind, device, graphs, x, args, arch) -> None:
    """updates/s per point and in all: P separate engines, one after the other, against
    one batch of P."""
    singles = [FOLLOWS[kind]] + (["mlp"] if kind == "mlp" and device == "cuda" else [])
    print(f"  {'':17s} {'updates/s per point':>20s} {'updates/s in all':>17s}")
    n = args.batched_updates
    for P in args.points:
        times = {
            f"{P} x {name}": sum(
                timed(make_engine(name, pr), n) for pr in problems(x, P, device, **arch)
            )
            for name in singles
        }
        batch = batched_engine(problems(x, P, device, **arch), cuda_graphs=graphs)
        times[f"batched P={P}"] = together = timed(batch, n)
        for name, t in times.items():
            print(f"  {name:17s} {n / t:20.0f} {P * n / t:17.0f}")
        separate = times[f"{P} x {FOLLOWS[kind]}"]
        prefix = "batched" if kind == "linear" else "batched_mlp"
        print(
            f"  {prefix}_speedup_P{P}_{device}{'_graphs' if graphs else ''}="
            f"{separate / together:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
