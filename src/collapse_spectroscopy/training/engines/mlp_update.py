"""The MLP VAE's update without autograd, for one point or P stacked (docs/science.md §5, §9).

The one home of the hand-written forward and backward passes, the loss and the Adam step
of the MLP VAE: :class:`.mlp_fast.MLPFastEngine` runs them on one point (buffers
``(n_b, w)``, ``torch.addmm``/``torch.mm``), :class:`.batched_mlp.BatchedMLPEngine` on P
points stacked along a leading axis (buffers ``(P, n_b, w)``, ``torch.baddbmm``/
``torch.bmm``, ``beta`` per point). Every product is one call into a preallocated buffer,
every activation and its derivative one ATen kernel (the very kernels autograd calls:
``gelu_backward``, ``silu_backward``, ...), and Adam one ``torch._fused_adam_`` call on
one flat vector (the kernel of ``torch.optim.Adam(fused=True)``, which the ``mlp`` engine
runs), so an update creates no tensors.

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
means) is formed from four sums per update (:func:`window_losses`). The parameters of a
point are one flat vector in the order of ``model.parameters()`` (each layer's weight,
then its bias; encoder, then decoder); a stack of P keeps each of those tensors of all P
points as one contiguous block (``(P, n_out, n_in)``, then ``(P, n_out)``), so that the
batched products read and write them in place, and P = 1 is the single point's layout.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import torch

from collapse_spectroscopy.training.engines.layout import ADAM_BETAS, ADAM_EPS

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
    of its gradient: :meth:`buffers` makes, for one set of buffers, a plan of torch calls
    whose arguments (views, transposes) are made once, which :meth:`forward` and
    :meth:`backward` run.

    ``points``: None for one point (2-D weights, ``torch.addmm``/``torch.mm``), P for a
    stack (weights ``(P, n_out, n_in)``, ``torch.baddbmm``/``torch.bmm``; the module
    docstring's layout). ``heads`` cut the output layer's rows into separate (contiguous)
    output buffers: the encoder's ``[mu, logs2]`` as ``(K, K)``."""

    def __init__(
        self, widths: list[int], p, g, start: int, act: str, heads: tuple[int, ...], points=None
    ):
        self.widths, self.f, self.df, self.heads = widths, _forward(act), _backward(act), heads
        one = points is None
        lead, n = ((), 1) if one else ((int(points),), int(points))
        self.mm, self.addmm = (torch.mm, torch.addmm) if one else (torch.bmm, torch.baddbmm)
        # the bias as the product's first argument, broadcast over the batch rows
        self.bias = (lambda b: b) if one else (lambda b: b.unsqueeze(-2))
        self.W, self.b, self.gW, self.gb = [], [], [], []
        for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
            mid, end = start + n * n_out * n_in, start + n * n_out * (n_in + 1)
            for flat, Ws, bs in ((p, self.W, self.b), (g, self.gW, self.gb)):
                Ws.append(flat[start:mid].view(*lead, n_out, n_in))
                bs.append(flat[mid:end].view(*lead, n_out))
            start = end
        self.end = start

    def buffers(self, x, outs: list, dout, dx) -> tuple:
        """The plan for input buffer ``x`` ``(..., n_b, widths[0])``, output buffers ``outs``
        (one per head), output gradient ``dout`` ``(..., n_b, widths[-1])`` and input
        gradient ``dx`` (None: not wanted)."""
        rows, hidden = x.shape[:-1], self.widths[1:-1]
        pre, act, dact, dpre = ([x.new_empty(*rows, w) for w in hidden] for _ in range(4))
        inputs = [x, *act]
        bias = self.bias
        fwd = [(bias(self.b[i]), inputs[i], self.W[i].mT, pre[i], act[i]) for i in range(len(pre))]
        cuts = np.cumsum([0, *self.heads])
        W, b, a = self.W[-1], self.b[-1], inputs[-1]
        out = [
            (bias(b[..., r0:r1]), a, W[..., r0:r1, :].mT, o)
            for r0, r1, o in zip(cuts, cuts[1:], outs, strict=False)
        ]
        d = [*dpre, dout]
        bwd = []
        for i in range(len(self.W) - 1, -1, -1):
            grads = (d[i].mT, inputs[i], self.gW[i], d[i], self.gb[i])
            if i:
                back = (
                    (d[i], self.W[i], dact[i - 1]),
                    (pre[i - 1], act[i - 1], dact[i - 1], d[i - 1]),
                )
            else:
                back = ((d[0], self.W[0], dx), None) if dx is not None else (None, None)
            bwd.append((grads, *back))
        return fwd, out, bwd

    def forward(self, plan: tuple) -> None:
        f, addmm = self.f, self.addmm
        for b, a, WT, pre, act in plan[0]:
            f(addmm(b, a, WT, out=pre), act)
        for b, a, WT, out in plan[1]:
            addmm(b, a, WT, out=out)

    def backward(self, plan: tuple) -> None:
        df, mm = self.df, self.mm
        for (dT, a, gW, d, gb), prod, act in plan[2]:
            mm(dT, a, out=gW)
            torch.sum(d, dim=-2, out=gb)
            if prod is not None:
                mm(prod[0], prod[1], out=prod[2])
            if act is not None:
                df(*act)


class MLPUpdate:
    """One Adam update of the MLP VAE (the module docstring), on the batch in the ``xb``
    buffer and the noise in the ``eps`` buffer of the plan :meth:`_plan` selected.

    The engine sets: ``p``, ``g``, ``m``, ``v`` (flat weights, gradient, Adam moments),
    ``step_t`` (Adam's step, a float32 tensor on the device), ``lr``, ``sigma2``, ``K``,
    ``d``, ``enc`` and ``dec`` (:class:`Net`), ``lead`` (``()`` for one point, ``(P,)`` for
    a stack), ``_plans = {}``, and :meth:`_coefficients`."""

    lead: tuple = ()

    def _coefficients(self, nb: int) -> tuple:
        """``(beta / (2 n_b), beta / n_b)``: floats for one point, ``(P, 1, 1)`` tensors
        for a stack."""
        raise NotImplementedError

    def _plan(self, nb: int) -> SimpleNamespace:
        """Select (and make, once per batch size) the buffers and plans of batches of ``nb``."""
        plan = self._plans.get(nb)
        if plan is None:
            plan = self._plans[nb] = self._make_plan(nb)
        self.cur = plan
        return plan

    def _make_plan(self, nb: int) -> SimpleNamespace:
        new, K, d, lead = self.p.new_empty, self.K, self.d, self.lead
        b = SimpleNamespace(nb=nb)
        b.xb, b.eps, b.xhat = new(*lead, nb, d), new(*lead, nb, K), new(*lead, nb, d)
        b.mu, b.ls, b.s, b.se, b.s2 = (new(*lead, nb, K) for _ in range(5))
        b.z, b.dz, b.dh = new(*lead, nb, K), new(*lead, nb, K), new(*lead, nb, 2 * K)
        b.dmu, b.dls = b.dh[..., :K], b.dh[..., K:]
        b.flat = {k: getattr(b, k).view(*lead, -1) for k in ("xhat", "mu", "ls", "s2")}
        b.enc = self.enc.buffers(b.xb, [b.mu, b.ls], b.dh, None)
        b.dec = self.dec.buffers(b.z, [b.xhat], b.xhat, b.dz)  # xhat becomes G in place
        b.c_ls, b.c_mu = self._coefficients(nb)
        return b

    def step(self, sums: torch.Tensor) -> None:
        """One update on the batch and noise in the selected plan's ``xb`` and ``eps``;
        ``sums`` (``(4,)``, or ``(4, P)``) gets ``sum (xhat - x)^2``, ``sum mu^2``,
        ``sum s^2`` and ``sum logs2`` over the batch (of each point)."""
        b = self.cur
        self.enc.forward(b.enc)  # mu, logs2
        s, se = b.s, b.se
        torch.mul(b.ls, 0.5, out=s).exp_()  # s = exp(logs2 / 2)
        torch.mul(s, b.eps, out=se)
        torch.add(b.mu, se, out=b.z)  # z = mu + s eps
        self.dec.forward(b.dec)  # xhat
        b.xhat.sub_(b.xb)  # r = xhat - x
        torch.mul(s, s, out=b.s2)
        self._reduce(b, sums)
        # backward
        b.xhat.mul_(1.0 / (self.sigma2 * b.nb))  # G
        self.dec.backward(b.dec)  # dz
        torch.sub(b.s2, 1.0, out=b.dls).mul_(b.c_ls)  # beta (s^2 - 1) / (2 n_b)
        b.dls.addcmul_(b.dz, se, value=0.5)  # + dz eps s / 2
        if self.lead:  # dz + beta mu / n_b
            torch.addcmul(b.dz, b.mu, b.c_mu, out=b.dmu)
        else:
            torch.add(b.dz, b.mu, alpha=b.c_mu, out=b.dmu)
        self.enc.backward(b.enc)
        self._adam()

    def _reduce(self, b: SimpleNamespace, sums: torch.Tensor) -> None:
        f = b.flat
        if self.lead:  # per point: batched dot products and row sums
            P = self.lead[0]
            for k, key in ((0, "xhat"), (1, "mu")):
                v = f[key]
                torch.bmm(v.unsqueeze(1), v.unsqueeze(2), out=sums[k].view(P, 1, 1))
        else:
            torch.dot(f["xhat"], f["xhat"], out=sums[0])
            torch.dot(f["mu"], f["mu"], out=sums[1])
        torch.sum(f["s2"], -1, out=sums[2])
        torch.sum(f["ls"], -1, out=sums[3])

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


@torch.no_grad()
def copy_into(model, flat: torch.Tensor):
    """Copy the flat weights ``flat`` (``model.parameters()`` order) into ``model`` (copies:
    the model never shares memory with them); return the model."""
    start = 0
    for param in model.parameters():
        param.copy_(flat[start : start + param.numel()].view_as(param))
        start += param.numel()
    return model


def window_losses(sums: torch.Tensor, sizes: np.ndarray, sigma2: float, beta, K: int, dtype):
    """The batch loss ``L = D + beta R`` (batch means) of each update of a window from its
    :meth:`MLPUpdate.step` sums: ``sums`` ``(n, 4)`` for one point (``beta`` a float) or
    ``(n, 4, P)`` for a stack (``beta`` ``(P,)``), ``sizes`` the ``n`` batch sizes; the
    losses ``(n,)`` or ``(n, P)`` in the numpy ``dtype``."""
    r2, mu2, s2, ls = np.moveaxis(sums.double().cpu().numpy(), 1, 0)
    sizes = sizes.reshape(-1, *[1] * (sums.dim() - 2))
    kl = 0.5 * (mu2 + s2 - ls - sizes * K)
    return ((r2 / (2.0 * sigma2) + beta * kl) / sizes).astype(dtype)
