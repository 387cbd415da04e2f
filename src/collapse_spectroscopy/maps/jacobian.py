"""The decoder Jacobian of each active latent over the samples: its mean (the loadings of a
nonlinear model) and what the mean can hide (docs/science.md §10, "Loadings").

For latent ``k`` and feature ``j`` the local Jacobian ``J_ij = d xhat_j / d z_k`` at
``z = mu(x_i)`` varies from sample to sample for a nonlinear decoder. Where a curved
latent's effect changes sign along the data the mean cancels, so beside it:

- **RMS** ``sqrt(mean_i J_ij^2)``: the typical size of the local response. Always
  ``>= |mean|`` (Cauchy-Schwarz), with equality exactly when the Jacobian is constant;
  an RMS well above ``|mean|`` says the mean cancels or spreads.
- **sign agreement**: the fraction of samples whose local Jacobian has the mean's sign,
  ``mean_i (1 + sign(J_ij) sign(mean_j)) / 2``. A sample with ``J_ij = 0`` exactly (a dead
  ReLU) neither agrees nor opposes and counts one half; so does every sample where the mean
  is exactly 0, which has no sign to agree with (agreement 0.5: no preferred direction).
  1 means the latent pushes the feature the same way everywhere; near 0.5 the mean hides
  a sign change; below 0.5 most samples oppose the mean's sign, a few strong ones win.

Flipping a latent (the maps' sign convention) negates the mean and every local Jacobian:
the RMS is unchanged, and so is the agreement (the positive and negative counts swap with
the mean's sign), so only the mean carries the flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class JacobianStats:
    """Per active latent (rows, in ``columns`` order) and feature (columns), float64.

    Attributes
    ----------
    mean : (n, d) ``mean_i J_ij``, the loadings.
    rms : (n, d) ``sqrt(mean_i J_ij^2)``.
    agreement : (n, d) in [0, 1], the fraction of samples whose ``J_ij`` has the mean's
        sign (zeros count one half, see the module's docstring).
    """

    mean: np.ndarray
    rms: np.ndarray
    agreement: np.ndarray


def sign_agreement(n_pos: np.ndarray, n_neg: np.ndarray, n: int, mean: np.ndarray) -> np.ndarray:
    """``mean_i (1 + sign(J_i) sign(mean)) / 2`` from the counts of positive and negative
    local Jacobians among ``n`` samples: the counts suffice, so the pass over the samples
    need not know the mean's sign before it ends."""
    n_zero = n - n_pos - n_neg
    agree = (np.where(mean > 0, n_pos, n_neg) + 0.5 * n_zero) / n
    # a mean of exactly 0 has no sign: every sample counts one half; a NaN mean stays NaN
    return np.where(mean == 0, 0.5, np.where(np.isnan(mean), np.nan, agree))


def constant_jacobian_stats(columns: np.ndarray) -> JacobianStats:
    """The statistics of a decoder whose Jacobian is the same at every sample (the linear
    model, its rows the decoder columns ``W_k``): RMS ``|W|``, agreement 1 (0.5 where an
    entry is exactly 0), by the definitions, without a pass over the samples."""
    w = np.asarray(columns, dtype=np.float64)
    agreement = sign_agreement((w > 0).astype(np.float64), (w < 0).astype(np.float64), 1, w)
    return JacobianStats(mean=w.copy(), rms=np.abs(w), agreement=agreement)


def decoder_jacobian_stats(model, xs, columns: np.ndarray, chunk: int = 8192) -> JacobianStats:
    """The mean, RMS and sign agreement of ``J = d decode(z) / d z_k`` at ``z = mu(x)``
    over all samples of ``xs`` (a list of arrays), for each latent ``k`` in ``columns``.

    One forward-mode derivative per latent (``torch.func.jvp``): the decoder's response to
    moving latent ``k`` alone, at each sample's posterior mean. One pass: per chunk the sums
    of ``J`` and ``J^2`` and the counts of ``J > 0`` and ``J < 0`` are accumulated, so memory
    stays (chunk, d) whatever the number of samples.
    """
    import torch
    from torch.func import jvp

    shape = (len(columns), int(model.d))
    total, squares = np.zeros(shape), np.zeros(shape)
    n_pos, n_neg = np.zeros(shape), np.zeros(shape)
    n = 0
    with torch.no_grad():
        for x in xs:
            for start in range(0, x.shape[0], chunk):
                xc = torch.from_numpy(np.asarray(x[start : start + chunk], dtype=np.float64))
                z = model.encode(xc)[0]
                for row, k in enumerate(columns):
                    tangent = torch.zeros_like(z)
                    tangent[:, int(k)] = 1.0
                    jac = jvp(model.decode, (z,), (tangent,))[1]
                    total[row] += jac.sum(0).numpy()
                    squares[row] += (jac * jac).sum(0).numpy()
                    n_pos[row] += (jac > 0).sum(0).numpy()
                    n_neg[row] += (jac < 0).sum(0).numpy()
                n += xc.shape[0]
    mean = total / n
    return JacobianStats(
        mean=mean, rms=np.sqrt(squares / n), agreement=sign_agreement(n_pos, n_neg, n, mean)
    )
