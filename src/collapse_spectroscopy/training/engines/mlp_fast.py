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

**The update.** With ``a_0 = x``, ``p_l = a_{l-1} W_l^T + b_l``, ``a_l = f(p_l)`` (the last
layer of each network affine), ``[mu, logs2]`` the encoder's output, ``s = exp(logs2 / 2)``,
``z = mu + s eps``, ``xhat`` the decoder's output and ``G = (xhat - x) / (sigma2 n_b)``::

    decoder   dW_L = G^T a_{L-1},  db_L = sum_b G,  da_{L-1} = G W_L
              dp_l = f'(p_l) da_l,  dW_l = dp_l^T a_{l-1},  db_l = sum_b dp_l,  da_{l-1} = dp_l W_l
              dz = da_0
    latent    dmu    = dz + beta mu / n_b
              dlogs2 = dz eps s / 2 + beta (s^2 - 1) / (2 n_b)
    encoder   the same recursion from [dmu, dlogs2] (no gradient for x)

The loss ``D + beta R`` of :func:`collapse_spectroscopy.models.linear.sampled_loss` (batch
means) is formed from the same buffers. The parameters live in one flat vector in the
order of ``model.parameters()`` (each layer's weight, then its bias; encoder, then
decoder), with views per layer; ``sync_model`` copies them into the model.

It loads the ``mlp`` engine's state (:func:`flat_state`) and ``mlp`` loads its own, so a
checkpoint resumes in either. In float64 it follows ``mlp`` to ~1e-15 over hundreds of
updates; in float32 to float32 round-off grown by training
(tests/training/test_mlp_fast.py). It averages weights (``training.average``) as the
torch engines do (:mod:`.averaging`). Any torch device runs it (tested on the CPU only);
``auto`` picks it on a CPU, ``mlp`` elsewhere.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from collapse_spectroscopy.models.mlp import MLPVAE
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.layout import ADAM_BETAS, ADAM_EPS
from collapse_spectroscopy.training.engines.mlp import fixed_draw_loss, validation_seed
from collapse_spectroscopy.training.engines.torch_engines import TorchEngine

aten = torch.ops.aten


def _forward(name: str):
    """``f(p, out)``: the activation ``name`` of ``models.mlp.ACTIVATIONS`` into ``out``
    (torch's defaults: exact GELU, softplus beta 1 threshold 20, ELU alpha 1)."""
    return {
        "gelu": lambda p, out: aten.gelu.out(p, approximate="none", out=out),
        "relu": lambda p, out: torch.clamp_min(p, 0, out=out),
        "tanh": lambda p, out: torch.tanh(p, out=out),
        "silu": lambda p, out: aten.silu.out(p, out=out),
        "softplus": lambda p, out: aten.softplus.out(p, 1, 20, out=out),
        "elu": lambda p, out: aten.elu.out(p, 1.0, 1, 1, out=out),
    }[name]


def _backward(name: str):
    """``f'(p, a, g, out)``: ``g f'(p)`` into ``out`` from the pre-activation ``p`` and the
    activation ``a = f(p)``, by the kernel autograd uses for ``name``."""
    return {
        "gelu": lambda p, a, g, out: aten.gelu_backward.grad_input(
            g, p, approximate="none", grad_input=out
        ),
        "relu": lambda p, a, g, out: aten.threshold_backward.grad_input(g, a, 0, grad_input=out),
        "tanh": lambda p, a, g, out: aten.tanh_backward.grad_input(g, a, grad_input=out),
        "silu": lambda p, a, g, out: aten.silu_backward.grad_input(g, p, grad_input=out),
        "softplus": lambda p, a, g, out: aten.softplus_backward.grad_input(
            g, p, 1, 20, grad_input=out
        ),
        "elu": lambda p, a, g, out: aten.elu_backward.grad_input(
            g, 1.0, 1, 1, False, p, grad_input=out
        ),
    }[name]


@contextlib.contextmanager
def native_kernels(on: bool):
    """While ``on``: torch's own CPU kernels instead of oneDNN's. For float32 GELU and its
    derivative torch calls oneDNN, which costs ~7 us and ~15 us more per call than torch's
    own vectorized kernels (18 and 29 us against 12 and 21 us on a 256 x 64 batch, one
    thread): ~50 us of an update at WorldClim size. The products (MKL) do not change.
    Both compute exact GELU to float32 round-off; validation runs outside, as ``mlp``'s."""
    if not on:
        yield
        return
    before = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(before)


class Net:
    """One MLP of the model (the encoder or the decoder) on views of the flat weights and
    of its gradient, with buffers for one batch size: :meth:`forward` and :meth:`backward`
    run a plan of torch calls whose arguments (views, transposes) are made once per batch
    size, so that an update creates no tensors.

    ``heads`` cut the output layer's rows into separate (contiguous) output buffers: the
    encoder's ``[mu, logs2]`` as ``(K, K)``."""

    def __init__(self, widths: list[int], p, g, start: int, act: str, heads: tuple[int, ...]):
        self.widths, self.f, self.df, self.heads = widths, _forward(act), _backward(act), heads
        self.W, self.b, self.gW, self.gb = [], [], [], []
        for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
            for flat, Ws, bs in ((p, self.W, self.b), (g, self.gW, self.gb)):
                Ws.append(flat[start : start + n_out * n_in].view(n_out, n_in))
                bs.append(flat[start + n_out * n_in : start + n_out * (n_in + 1)])
            start += n_out * (n_in + 1)
        self.end = start

    def buffers(self, x, outs: list, dout, dx) -> None:
        """The plan for input buffer ``x`` ``(n_b, widths[0])``, output buffers ``outs``
        (one per head), output gradient ``dout`` ``(n_b, widths[-1])`` and input gradient
        ``dx`` (None: not wanted)."""
        nb, hidden = x.shape[0], self.widths[1:-1]
        pre = [x.new_empty(nb, w) for w in hidden]
        act = [x.new_empty(nb, w) for w in hidden]
        dact = [x.new_empty(nb, w) for w in hidden]
        dpre = [x.new_empty(nb, w) for w in hidden]
        inputs = [x, *act]
        self.fwd = [(self.b[i], inputs[i], self.W[i].T, pre[i], act[i]) for i in range(len(pre))]
        rows = np.cumsum([0, *self.heads])
        W, b, a = self.W[-1], self.b[-1], inputs[-1]
        self.out = [
            (b[r0:r1], a, W[r0:r1].T, o) for r0, r1, o in zip(rows, rows[1:], outs, strict=False)
        ]
        d = [*dpre, dout]
        self.bwd = []
        for i in range(len(self.W) - 1, -1, -1):
            grads = (d[i].T, inputs[i], self.gW[i], d[i], self.gb[i])
            if i:
                back = (
                    (d[i], self.W[i], dact[i - 1]),
                    (pre[i - 1], act[i - 1], dact[i - 1], d[i - 1]),
                )
            else:
                back = ((d[0], self.W[0], dx), None) if dx is not None else (None, None)
            self.bwd.append((grads, *back))

    def forward(self) -> None:
        f = self.f
        for b, a, WT, pre, act in self.fwd:
            f(torch.addmm(b, a, WT, out=pre), act)
        for b, a, WT, out in self.out:
            torch.addmm(b, a, WT, out=out)

    def backward(self) -> None:
        df = self.df
        for (dT, a, gW, d, gb), prod, act in self.bwd:
            torch.mm(dT, a, out=gW)
            torch.sum(d, dim=0, out=gb)
            if prod is not None:
                torch.mm(prod[0], prod[1], out=prod[2])
            if act is not None:
                df(*act)


class MLPFastEngine(TorchEngine):
    """The engine protocol (:class:`.base.Engine`) for the MLP VAE by hand-written
    gradients (the module docstring)."""

    name = "mlp_fast"

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
        self._nb = None
        self._sums = self.p.new_empty(0, 4)
        self._np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype  # of the losses
        # GELU on the CPU: torch's own kernels, not oneDNN's (see native_kernels)
        self.native = act == "gelu" and self.device.type == "cpu"
        self.start_average()
        self.averaged_model = copy.deepcopy(model) if self.average is not None else None

    def _buffers(self, nb: int) -> None:
        """The buffers of one update for batches of ``nb``, and the networks' plans."""
        new, K, d = self.p.new_empty, self.K, self.d
        self.xb, self.eps, self.xhat = new(nb, d), new(nb, K), new(nb, d)
        self.mu, self.ls, self.s, self.se, self.s2 = (new(nb, K) for _ in range(5))
        self.z, self.dz, self.dh = new(nb, K), new(nb, K), new(nb, 2 * K)
        self.dmu, self.dls = self.dh[:, :K], self.dh[:, K:]
        self.flat = {k: getattr(self, k).view(-1) for k in ("xhat", "mu", "ls", "s2")}
        self.enc.buffers(self.xb, [self.mu, self.ls], self.dh, None)
        self.dec.buffers(self.z, [self.xhat], self.xhat, self.dz)  # xhat becomes G in place
        self._nb = nb

    def run_window(self, n_updates: int) -> np.ndarray:
        if self._sums.shape[0] < n_updates:
            self._sums = self.p.new_empty(n_updates, 4)
        sums, sizes = self._sums, np.empty(n_updates)
        with native_kernels(self.native):
            for i in range(n_updates):
                rows = self.batches.next()
                if rows.shape[0] != self._nb:
                    self._buffers(rows.shape[0])
                torch.index_select(self.x, 0, rows, out=self.xb)
                # the mlp engine's draw: torch.randn((n_b, K)) from the noise generator
                torch.randn(self.eps.shape, generator=self.g_noise, out=self.eps)
                self.step(sums[i])
                sizes[i] = self._nb
                if self.average is not None:
                    self.average.update(self.p)
        # L = D + beta R (batch means) from each update's sums
        r2, mu2, s2, ls = sums[:n_updates].double().cpu().numpy().T
        kl = 0.5 * (mu2 + s2 - ls - sizes * self.K)
        return ((r2 / (2.0 * self.sigma2) + self.beta * kl) / sizes).astype(self._np_dtype)

    def step(self, sums: torch.Tensor) -> None:
        """One update on the batch and noise in ``xb`` and ``eps``; ``sums`` gets
        ``sum (xhat - x)^2``, ``sum mu^2``, ``sum s^2`` and ``sum logs2`` over the batch."""
        nb, beta, f = self._nb, self.beta, self.flat
        self.enc.forward()  # mu, logs2
        s, se = self.s, self.se
        torch.mul(self.ls, 0.5, out=s).exp_()  # s = exp(logs2 / 2)
        torch.mul(s, self.eps, out=se)
        torch.add(self.mu, se, out=self.z)  # z = mu + s eps
        self.dec.forward()  # xhat
        self.xhat.sub_(self.xb)  # r = xhat - x
        torch.mul(s, s, out=self.s2)
        torch.dot(f["xhat"], f["xhat"], out=sums[0])
        torch.dot(f["mu"], f["mu"], out=sums[1])
        torch.sum(f["s2"], 0, out=sums[2])
        torch.sum(f["ls"], 0, out=sums[3])
        # backward
        self.xhat.mul_(1.0 / (self.sigma2 * nb))  # G
        self.dec.backward()  # dz
        c = 0.5 * beta / nb
        torch.sub(self.s2, 1.0, out=self.dls).mul_(c)  # beta (s^2 - 1) / (2 n_b)
        self.dls.addcmul_(self.dz, se, value=0.5)  # + dz eps s / 2
        torch.add(self.dz, self.mu, alpha=beta / nb, out=self.dmu)  # dz + beta mu / n_b
        self.enc.backward()
        self._adam()

    @torch.no_grad()
    def _adam(self) -> None:
        # torch.optim.Adam(fused=True)'s own kernel (the mlp engine's), on the flat vector
        self.step_t += 1
        torch._fused_adam_(
            [self.p],
            [self.g],
            [self.m],
            [self.v],
            [],
            [self.step_t],
            lr=self.lr,
            beta1=ADAM_BETAS[0],
            beta2=ADAM_BETAS[1],
            weight_decay=0.0,
            eps=ADAM_EPS,
            amsgrad=False,
            maximize=False,
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
        start = 0
        for param in model.parameters():
            param.copy_(flat[start : start + param.numel()].view_as(param))
            start += param.numel()
        return model

    def validation_loss(self) -> tuple[float, float, float]:
        return fixed_draw_loss(self.sync_model(), self.x_val, self.beta, self.sigma2, self.val_seed)

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
