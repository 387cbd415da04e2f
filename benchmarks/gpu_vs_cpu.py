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
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from collapse_spectroscopy import observables
from collapse_spectroscopy.training import TrainConfig, train_scan_point


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
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to compare (run this on a GPU machine)")
        return 0
    torch.set_num_threads(1)
    xtr, xva, xte = data()
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
    return 0 if (d_rho < 0.02 and d_dn < 0.02) else 1


if __name__ == "__main__":
    sys.exit(main())
