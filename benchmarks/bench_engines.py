"""Training throughput on one CPU core: a plain PyTorch loop against our engines.

Run: ``python benchmarks/bench_engines.py [--updates N] [--rounds R]``. Not a test.

All contenders run in this one process, single-threaded (torch, BLAS and numba pools
limited to one thread), on the same synthetic data at the paper's WorldClim sizes (d = 19
features, K = 32 latents, batch 256, float32, 100,000 training samples) and for the same
number of Adam updates of the same model and loss:

(a) ``dataloader``: the typical research loop, ``TensorDataset`` + ``DataLoader(shuffle=True,
    batch_size=256)`` + autograd + ``torch.optim.Adam``;
(b) ``autograd``: the reference engine (autograd + ``torch.optim.Adam``);
(c) ``fast``: hand-written gradients and fused Adam in torch;
(d) ``numba``: the jitted engine, a window of 1,000 updates per call (warm: its compile
    time is measured and reported separately).

(b), (c) and (d) are driven through the engine protocol, as the trainer drives them
(``run_window`` of 1,000 updates: each engine draws its batches, an epoch permutation at a
time, and its noise). The contenders take turns for ``--rounds`` rounds and each reports
its best round, so that a load spike on a shared machine does not favour one of them.
Timing is training only; the last part times the whole training loop
(``train_scan_point``, validation every 1,000 updates on a validation split of 30 % of the
training size, ``--val-samples`` to change it: the MLP's fixed-draw validation pass costs
in proportion, and WorldClim's validation split holds 149,731 samples).
The line ``speedup_vs_dataloader=<ratio>`` is for the fastest engine.

The batched engine (``--batched 1 4 16``, the default; ``--batched`` with no value skips
it) trains P points (other temperatures and seeds) as one batched model; it is timed the
same way (best of the rounds, one window of 1,000 updates at a time) against ``fast`` and
``numba`` on one point, and reported as updates/s per point (each of the P points runs
that many updates per second) and in all (P times that). ``--batched-only`` times just
this part.

The MLP family (docs/science.md §9) is timed the same way, on the same data and batches
of the same size: (e) ``mlp_dataloader``, the plain DataLoader loop above with the MLP VAE
(hidden widths ``--mlp-hidden``, default the schema's 64, 64; ``--mlp-activation``,
default GELU), against (f) the
``mlp`` engine (autograd; data on the device, batches by index, no DataLoader) and (g) the
``mlp_fast`` engine (hand-written gradients, no autograd; ``auto``'s choice on a CPU), on
``--device`` (default cpu; ``cuda`` times them there). It prints
``mlp_speedup_vs_dataloader=<ratio>`` for ``mlp_fast``,
``mlp_autograd_speedup_vs_dataloader=<ratio>`` for ``mlp``, and
``mlp_fraction_of_peak=<ratio>``: ``mlp_fast``'s FLOPs per second (the products of the
update, counted in :func:`mlp_update_flops`) over those of a float32 ``torch.mm`` of
256x64 @ 64x64, the update's typical product, timed in this process on one thread.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["NUMBA_NUM_THREADS"] = "1"  # before numba is imported
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from collapse_spectroscopy.analysis.temperature import temperature_to_beta, total_variance  # noqa: E402
from collapse_spectroscopy.models.families import Architecture
from collapse_spectroscopy.models.linear import LinearVAE, sampled_loss  # noqa: E402
from collapse_spectroscopy.models.mlp import MLPVAE  # noqa: E402
from collapse_spectroscopy.training.engines import TrainingProblem, make_engine  # noqa: E402
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point  # noqa: E402

D, K, BATCH, N_TRAIN = 19, 32, 256, 100_000
T = 0.01  # a temperature inside the WorldClim scan range
LR = 1e-3
WINDOW = 1000


def synthetic(n: int, seed: int) -> np.ndarray:
    """Correlated Gaussian features with a decaying spectrum, standardized (float32)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    scales = np.exp(-0.35 * np.arange(D))
    x = (rng.standard_normal((n, D)) * scales) @ q.T
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def new_model() -> LinearVAE:
    return LinearVAE(D, K, generator=torch.Generator().manual_seed(0))


def run_dataloader(
    x: np.ndarray, beta: float, updates: int, model_fn=None, device: str = "cpu"
) -> float:
    """(a), (e) The plain loop; returns seconds for ``updates`` updates."""
    torch.manual_seed(1)
    model = (model_fn or new_model)().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=BATCH, shuffle=True)
    done = 0
    t0 = time.perf_counter()
    while done < updates:
        for (xb,) in loader:
            xb = xb.to(device)
            eps = torch.randn(xb.shape[0], K, device=device)
            loss, _, _ = sampled_loss(model, xb, eps, beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == updates:
                break
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_engine(
    name: str, x: np.ndarray, beta: float, updates: int, model_fn=None, device: str = "cpu"
) -> float:
    """(b)-(d), (f): ``updates`` updates of engine ``name``, a window at a time; returns
    seconds."""
    problem = TrainingProblem(
        model=(model_fn or new_model)().to(device),
        x_train=x,
        x_val=x[:1000],
        beta=beta,
        sigma2=1.0,
        learning_rate=LR,
        batch_size=BATCH,
        shuffle_seed=3,
        noise_seed=2,
    )
    engine = make_engine(name, problem)
    t0 = time.perf_counter()
    for start in range(0, updates, WINDOW):
        losses = engine.run_window(min(WINDOW, updates - start))
        assert np.isfinite(losses).all()
    return time.perf_counter() - t0


def numba_compile_seconds(x: np.ndarray, beta: float) -> float:
    """First call of the numba engine (compiles, or loads the on-disk cache)."""
    t0 = time.perf_counter()
    run_engine("numba", x[:4096], beta, 2)
    return time.perf_counter() - t0


def best_seconds(contenders: dict, rounds: int) -> dict:
    """The fastest of ``rounds`` timings of each contender (a function returning seconds),
    taken in turn round by round so that a slow spell of the machine hits all of them."""
    best = dict.fromkeys(contenders, np.inf)
    for _ in range(rounds):
        for name, run in contenders.items():
            best[name] = min(best[name], run())
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--updates", type=int, default=2000, help="updates per contender and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mlp-hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--mlp-activation", default="gelu", help="activation of the MLP timings")
    ap.add_argument("--device", default="cpu", help="device of the MLP timings (cpu, cuda)")
    ap.add_argument("--mlp-only", action="store_true", help="time the MLP family only")
    ap.add_argument(
        "--val-samples",
        type=int,
        default=int(0.3 * N_TRAIN),
        help="validation samples of the whole-loop timings (default %(default)s, 30 %% of the "
        "training size; WorldClim's validation split holds 149,731: its MLP validation "
        "passes cost ~5x this default's)",
    )
    ap.add_argument(
        "--batched", type=int, nargs="*", default=[1, 4, 16], help="points per batch to time"
    )
    ap.add_argument("--batched-only", action="store_true", help="time the batched engine only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)

    x = synthetic(N_TRAIN, seed=0)
    beta = temperature_to_beta(T, total_variance(x), 1.0)
    print(
        f"d={D} K={K} batch={BATCH} n_train={N_TRAIN} float32, {args.updates} updates per "
        f"contender and round, best of {args.rounds} rounds; torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}"
    )
    if args.mlp_only:
        return bench_mlp(args, x, beta)
    if args.batched_only:
        return bench_batched(args, x)
    print(
        f"numba engine first call (compile or cache load): {numba_compile_seconds(x, beta):.1f} s"
    )

    contenders = {
        "dataloader": lambda: run_dataloader(x, beta, args.updates),
        "autograd": lambda: run_engine("autograd", x, beta, args.updates),
        "fast": lambda: run_engine("fast", x, beta, args.updates),
        "numba": lambda: run_engine("numba", x, beta, args.updates),
    }
    best = best_seconds(contenders, args.rounds)
    rates = {name: args.updates / s for name, s in best.items()}
    base = rates["dataloader"]
    labels = {
        "dataloader": "(a) plain PyTorch DataLoader loop",
        "autograd": "(b) autograd reference engine",
        "fast": "(c) torch fast engine",
        "numba": "(d) numba engine",
    }
    print("\ntraining only (no validation passes):")
    for name, rate in rates.items():
        print(f"  {labels[name]:36s} {rate:9.0f} updates/s  {rate / base:6.1f} x dataloader")

    # the whole training loop, validation included (what a scan job pays per update)
    x_val = synthetic(args.val_samples, seed=1)
    print(
        f"\nwhole training loop (train_scan_point, {args.updates * 2} updates, validation "
        f"every {WINDOW} on {x_val.shape[0]} samples):"
    )
    for name in ("fast", "numba"):
        cfg = TrainConfig(
            engine=name,
            max_updates=args.updates * 2,
            eval_every=WINDOW,
            patience=10**9,
            device="cpu",
            progress=False,
        )
        r = train_scan_point(x, x_val, T, seed=0, latents=K, config=cfg)
        rate = r.updates_run / r.elapsed_s
        print(f"  {name:36s} {rate:9.0f} updates/s  {rate / base:6.1f} x dataloader")

    fastest = max(("autograd", "fast", "numba"), key=rates.get)
    print(f"\nfastest engine: {fastest}")
    print(f"speedup_vs_dataloader={rates[fastest] / base:.1f}")
    bench_mlp(args, x, beta)
    bench_batched(args, x)


def run_batched(x: np.ndarray, points: int, updates: int) -> float:
    """``updates`` updates of ``points`` points (temperatures spread over the WorldClim
    scan's decades, seeds 0..P-1) in one batched engine, a window at a time; seconds."""
    from collapse_spectroscopy.training.engines.batched import BatchedEngine

    V = total_variance(x)
    problems = [
        TrainingProblem(
            model=LinearVAE(D, K, generator=torch.Generator().manual_seed(i)),
            x_train=x,
            x_val=x[:1000],
            beta=temperature_to_beta(T * 10.0 ** (-i % 3), V, 1.0),
            sigma2=1.0,
            learning_rate=LR,
            batch_size=BATCH,
            shuffle_seed=3 + i,
            noise_seed=2 + i,
        )
        for i in range(points)
    ]
    engine = BatchedEngine(problems)
    t0 = time.perf_counter()
    for start in range(0, updates, WINDOW):
        losses = engine.run_window(min(WINDOW, updates - start))
        assert np.isfinite(losses).all()
    return time.perf_counter() - t0


def bench_batched(args, x: np.ndarray) -> None:
    """P points as one batched model against one point in ``fast`` and in ``numba``."""
    if not args.batched:
        return
    beta = temperature_to_beta(T, total_variance(x), 1.0)
    run_engine("numba", x[:4096], beta, 2)  # compile or load the cache outside the timing
    contenders = {
        "fast": lambda: run_engine("fast", x, beta, args.updates),
        "numba": lambda: run_engine("numba", x, beta, args.updates),
        **{f"batched P={p}": (lambda p=p: run_batched(x, p, args.updates)) for p in args.batched},
    }
    best = best_seconds(contenders, args.rounds)
    print("\nbatched engine, training only (P points in one batched model, one CPU core):")
    print(f"  {'':22s} {'updates/s per point':>20s} {'updates/s in all':>17s}")
    for name, seconds in best.items():
        points = int(name.split("=")[1]) if "=" in name else 1
        rate = args.updates / seconds
        print(f"  {name:22s} {rate:20.0f} {rate * points:17.0f}")
    top = max(args.batched)
    rate = top * args.updates / best[f"batched P={top}"]
    print(f"batched_P{top}_vs_numba={rate * best['numba'] / args.updates:.2f}")


def mlp_update_flops(d: int, k: int, hidden: list[int], batch: int) -> int:
    """Floating-point operations of the products of one MLP VAE update (forward and
    backward) on a batch of ``batch``.

    Every affine layer ``n_in -> n_out`` costs ``2 batch n_in n_out`` (a multiply and an
    add per weight and sample) in the forward pass, as much again for its weight gradient
    (``dP^T A``) and again for its input's gradient (``dP W``), except the encoder's first
    layer, whose input (the data) needs none. The encoder is ``d -> hidden -> 2K``, the
    decoder ``K -> reversed(hidden) -> d``. Bias terms, activations, the reparameterization
    and Adam are O(batch x width) and left out (at WorldClim size the bias terms and Adam
    would add ~1.3 %), so this is the work a matmul-bound implementation cannot avoid:
    25.1 MFLOP for d = 19, K = 32, hidden 64-64, batch 256.
    """
    enc = [d, *hidden, 2 * k]
    dec = [k, *hidden[::-1], d]
    macs = sum(a * b for net in (enc, dec) for a, b in zip(net[:-1], net[1:], strict=True))
    return 2 * batch * (3 * macs - d * hidden[0])


def matmul_flops_per_s(device: str, rounds: int, reps: int = 2000) -> float:
    """FLOP/s of a float32 ``torch.mm`` of 256x64 @ 64x64 (into a preallocated output),
    best of ``rounds`` runs of ``reps`` products, on the benchmark's one thread."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(BATCH, 64, generator=g).to(device)
    b = torch.randn(64, 64, generator=g).to(device)
    out = torch.empty(BATCH, 64, device=device)
    best = np.inf
    for _ in range(rounds):
        torch.mm(a, b, out=out)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return reps * 2 * BATCH * 64 * 64 / best


def bench_mlp(args, x: np.ndarray, beta: float) -> None:
    """(e) against (f) and (g): the MLP VAE in the plain loop and in the engines."""

    def model_fn():
        act = args.mlp_activation
        return MLPVAE(D, K, args.mlp_hidden, act, generator=torch.Generator().manual_seed(0))

    dev = args.device
    contenders = {
        "mlp_dataloader": lambda: run_dataloader(x, beta, args.updates, model_fn, dev),
        "mlp": lambda: run_engine("mlp", x, beta, args.updates, model_fn, dev),
        "mlp_fast": lambda: run_engine("mlp_fast", x, beta, args.updates, model_fn, dev),
    }
    best = best_seconds(contenders, args.rounds)
    rates = {name: args.updates / s for name, s in best.items()}
    print(f"\nMLP VAE (hidden {args.mlp_hidden}, {args.mlp_activation}) on {dev}, training only:")
    print(f"  (e) plain PyTorch DataLoader loop      {rates['mlp_dataloader']:9.0f} updates/s")
    print(f"  (f) mlp engine (autograd)              {rates['mlp']:9.0f} updates/s")
    print(f"  (g) mlp_fast engine (no autograd)      {rates['mlp_fast']:9.0f} updates/s")
    flops = mlp_update_flops(D, K, args.mlp_hidden, BATCH)
    peak = matmul_flops_per_s(dev, args.rounds)
    achieved = rates["mlp_fast"] * flops
    print(
        f"  update: {flops / 1e6:.1f} MFLOP; mlp_fast {achieved / 1e9:.1f} GFLOP/s, "
        f"float32 mm 256x64 @ 64x64 {peak / 1e9:.1f} GFLOP/s"
    )
    # the whole loop: the fixed-draw validation (S draws per sample) is what it adds
    x_val = synthetic(args.val_samples, seed=1)
    cfg = TrainConfig(
        max_updates=args.updates * 2,
        eval_every=WINDOW,
        patience=10**9,
        device=dev,
        progress=False,
    )
    r = train_scan_point(
        x,
        x_val,
        T,
        seed=0,
        latents=K,
        config=cfg,
        arch=Architecture("mlp", tuple(args.mlp_hidden), args.mlp_activation),
    )
    print(
        f"  whole training loop ({r.engine}), validation every {WINDOW} on {x_val.shape[0]} "
        f"samples: {r.updates_run / r.elapsed_s:.0f} updates/s"
    )
    base = rates["mlp_dataloader"]
    print(f"mlp_autograd_speedup_vs_dataloader={rates['mlp'] / base:.2f}")
    print(f"mlp_speedup_vs_dataloader={rates['mlp_fast'] / base:.2f}")
    print(f"mlp_fraction_of_peak={achieved / peak:.2f}")


if __name__ == "__main__":
    main()
