"""The ``mlp_fast`` engine: the MLP VAE's update without autograd (docs/science.md §5, §9).

The ``mlp`` engine's update (same batches, same noise, same Adam, same fixed-draw
validation), with the forward and backward passes written out in torch and run on
preallocated buffers: every product is one ``torch.addmm``/``torch.mm`` into a buffer,
every activation and its derivative one ATen kernel (the very kernels autograd calls:
``gelu_backward``, ``silu_backward``, ...), and Adam one ``torch._fused_adam_`` call on
one flat parameter vector (the kernel of ``torch.optim.Adam(fused=True)``, which the ``mlp``
engine runs). What it removes is autograd's graph, the optimizer's bookkeeping and the
allocations: at WorldClim size (d = 19, K = 32, hidden 64-64, batch 256) on one core
``benchmarks/bench_engines.py --mlp-only`` measures it beside ``mlp``.

**Why torch and not numba.** Measured on the development machine (one thread, float32,
256 x 64 activations): a 256x64 @ 64x64 product costs ~26 us in torch (MKL) and ~27 us
from numba's ``np.dot``, the same BLAS speed; exact GELU costs 18 us in torch (vectorized
``erf``) against 95 us in a numba loop over ``math.erf`` (scalar libm). The products and
the activations are the whole cost of this update, so numba would only win with a
hand-vectorized ``erf`` and each activation's derivative written out again.

**The update** (forward, backward, loss, Adam) is :mod:`.mlp_update`'s, the one home of its
equations, which the batched engine of ``model.kind: mlp`` runs on P stacked points
(:mod:`.batched_mlp`). The parameters live in one flat vector in the order of
``model.parameters()`` (each layer's weight, then its bias; encoder, then decoder), with
views per layer; ``sync_model`` copies them into the model.

It loads the ``mlp`` engine's state (:func:`flat_state`) and ``mlp`` loads its own, so a
checkpoint resumes in either. In float64 it follows ``mlp`` to ~1e-15 over hundreds of
updates; in float32 to float32 round-off grown by training
(tests/training/test_mlp_fast.py). It averages weights (``training.average``) as the
torch engines do (:mod:`.averaging`). Any torch device runs it (tested on the CPU only);
``auto`` picks it on a CPU, ``mlp`` elsewhere. It has ``mlp``'s noise-free mode
(``TrainingProblem.noise_free``: ``eps = 0``, the autoencoder baseline's training).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from collapse_spectroscopy.models.mlp import MLPVAE
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.mlp import (
    DrawCache,
    engine_validation,
    validation_seed,
)
from collapse_spectroscopy.training.engines.mlp_update import (
    MLPUpdate,
    Net,
    copy_into,
    native_kernels,
    window_losses,
)
from collapse_spectroscopy.training.engines.torch_engines import TorchEngine


class MLPFastEngine(MLPUpdate, TorchEngine):
    """The engine protocol (:class:`.base.Engine`) for the MLP VAE by hand-written
    gradients (the module docstring; the update is :class:`.mlp_update.MLPUpdate`'s)."""

    name = "mlp_fast"
    trains_noise_free = True  # eps = 0 (the mlp engine's noise-free mode)

    def __init__(self, problem: TrainingProblem):
        super().__init__(problem)
        model = self.model
        if not isinstance(model, MLPVAE):
            raise TypeError(f"the mlp_fast engine trains an MLPVAE, not {type(model).__name__}")
        self.K, self.d = K, d = model.latents, model.d
        self.p = parameters_to_vector(model.parameters()).detach().clone()
        self.g, self.m, self.v = (torch.zeros_like(self.p) for _ in range(3))
        self.step_t = torch.zeros((), dtype=torch.float32, device=self.device)
        hidden, act = list(model.hidden), model.activation
        self.enc = Net([d, *hidden, 2 * K], self.p, self.g, 0, act, heads=(K, K))
        self.dec = Net([K, *hidden[::-1], d], self.p, self.g, self.enc.end, act, heads=(d,))
        assert self.dec.end == self.p.numel()
        self.val_seed = validation_seed(problem.noise_seed)
        self.val_draws = DrawCache()  # the fixed validation draws, kept between passes
        self._plans: dict = {}
        self._sums = self.p.new_empty(0, 4)
        self._np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype  # of the losses
        # GELU on the CPU: torch's own kernels, not oneDNN's (see native_kernels)
        self.native = act == "gelu" and self.device.type == "cpu"
        self.start_average()
        self.averaged_model = copy.deepcopy(model) if self.average is not None else None

    def _coefficients(self, nb: int) -> tuple[float, float]:
        return 0.5 * self.beta / nb, self.beta / nb

    def run_window(self, n_updates: int) -> np.ndarray:
        if self._sums.shape[0] < n_updates:
            self._sums = self.p.new_empty(n_updates, 4)
        sums, sizes = self._sums, np.empty(n_updates)
        with native_kernels(self.native):
            for i in range(n_updates):
                rows = self.batches.next()
                b = self._plan(rows.shape[0])
                torch.index_select(self.x, 0, rows, out=b.xb)
                if self.noise_free:  # z = mu, and logs2 gets no gradient (beta = 0)
                    b.eps.zero_()
                else:  # the mlp engine's draw: torch.randn((n_b, K)) from the noise generator
                    torch.randn(b.eps.shape, generator=self.g_noise, out=b.eps)
                self.step(sums[i])
                sizes[i] = b.nb
                if self.average is not None:
                    self.average.update(self.p)
        return window_losses(
            sums[:n_updates], sizes, self.sigma2, self.beta, self.K, self._np_dtype
        )

    def weights(self) -> torch.Tensor:
        return self.p

    @torch.no_grad()
    def sync_model(self) -> MLPVAE:
        # copies (the model never shares memory with the flat weights)
        if self.average is None:
            model, flat = self.model, self.p
        else:
            model, flat = self.averaged_model, self.average.value(self.p)
        return copy_into(model, flat)

    def validation_loss(self) -> tuple[float, float, float]:
        return engine_validation(self)

    def _rule_state(self) -> dict:
        return {
            "p": self.p.clone(),
            "m": self.m.clone(),
            "v": self.v.clone(),
            "step": self.step_t.clone(),
        }

    def _load_rule_state(self, state: dict) -> None:
        if "p" not in state:  # the mlp engine's state (a checkpoint of an mlp training)
            state = flat_state(self.model, state)
        with torch.no_grad():
            for key in ("p", "m", "v"):
                getattr(self, key).copy_(state[key])
            self.step_t.copy_(state["step"])


def flat_state(model, state: dict) -> dict:
    """The ``mlp`` engine's weights and Adam state (``model``, ``optimizer``: a model
    state dict and ``torch.optim.Adam``'s) as ``mlp_fast``'s flat ``p``, ``m``, ``v`` and
    ``step``, so that a checkpoint an ``mlp`` training wrote (``auto`` on a CPU picked
    ``mlp`` before ``mlp_fast`` existed) resumes here; the batch stream, the noise
    generator and the average have one format in both."""
    names = [name for name, _ in model.named_parameters()]
    p = torch.cat([state["model"][name].reshape(-1) for name in names])
    moments = state["optimizer"]["state"]  # by parameter index, in model.parameters() order
    if not moments:  # no update yet
        zero = torch.zeros_like(p)
        return {"p": p, "m": zero, "v": zero, "step": torch.zeros(())}
    m, v = (
        torch.cat([moments[i][k].reshape(-1) for i in range(len(names))])
        for k in ("exp_avg", "exp_avg_sq")
    )
    return {"p": p, "m": m, "v": v, "step": moments[0]["step"]}
