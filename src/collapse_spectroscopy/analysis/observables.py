"""Per-latent observables and truncated distortions of a trained VAE (docs/science.md §3, §4).

All quantities are averages over the *whole* evaluation split, computed from the
posterior parameters ``mu(x) = A x + a`` and ``logs2(x) = B x + b`` and accumulated in
float64 over chunks (so memory stays bounded on 150k+ samples).

Per latent ``j``:

- ``m_j = mean mu_j^2``               posterior mean square (raw, not centred)
- ``v_j = mean exp(logs2_j)``         mean posterior variance
- ``l_j = mean logs2_j``              mean posterior log-variance
- ``R_j = 1/2 (m_j + v_j - 1 - l_j)``  KL rate, nats
- ``rho_j = m_j / (m_j + v_j)``       signal fraction (order parameter)
- ``q_j = m_j + v_j``                 latent scale
- ``J_j = log v_j - l_j >= 0``        Jensen gap

Latents are ranked by ``rho`` descending (rank 1 = most active). The truncated
distortion ``Dn_k`` keeps the ``k`` highest-ranked latents at their posterior means and
prunes the rest to 0 (the prior mean), or, in the variant, to their training-split mean
of ``mu``; it is normalized by ``E_eval ||x - xbar_train||^2`` so that ``Dn_0 = 1`` when the
decoder bias is the training mean.

That is the linear VAE (:func:`measure`, closed forms from a few moments). A model of any
family is measured through its networks by :func:`measure_decoded` (docs/science.md §9):
the same observables, ``Dn_k`` by decoding, one decoder pass per ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collapse_spectroscopy.errors import InputError

CHUNK = 65536
# Fixed draws of the pruned latents' prior behind the ``prior`` pruning rule (docs/science.md
# §9): two antithetic pairs (eps, -eps), so that an affine decoder's average over them is
# exactly its value at the prior mean and the rule equals ``zero`` there to round-off.
PRIOR_DRAWS = 4
# What a scan point holds besides truncated_distortion (pruned to 0, evaluation split):
# name -> (pruning rule, split), split "eval" or "val" (the validation split).
EXTRA_TRUNCATIONS = {
    "truncated_distortion_prior": ("prior", "eval"),
    "truncated_distortion_val": ("zero", "val"),
    "truncated_distortion_prior_val": ("prior", "val"),
}


@dataclass
class Moments:
    """First and second moments of the posterior means over a split (float64)."""

    n: int
    mean_mu: np.ndarray  # (K,)   E mu
    mean_mu2: np.ndarray  # (K,)   E mu^2
    mean_s2: np.ndarray  # (K,)   E exp(logs2)
    mean_logs2: np.ndarray  # (K,)   E logs2
    mu_mu: np.ndarray  # (K, K) E mu mu^T
    r_mu: np.ndarray  # (d, K) E (x - c) mu^T
    mean_r: np.ndarray  # (d,)   E (x - c)
    r2: float  # E ||x - c||^2
    x_ref2: float  # E ||x - xbar_ref||^2 (the normalizer)


def _check(params: dict, x: np.ndarray, name: str = "evaluation split") -> None:
    d = params["W"].shape[0]
    if x.ndim != 2 or x.shape[1] != d:
        raise InputError(f"{name}: expected an array of shape (n, {d}), got {x.shape}")
    if x.shape[0] == 0:
        raise InputError(f"{name}: is empty (0 samples)")


def posterior_moments(
    params: dict, x: np.ndarray, x_ref_mean: np.ndarray, chunk: int = CHUNK
) -> Moments:
    """Accumulate the moments of the posterior over ``x`` in float64, chunk by chunk."""
    _check(params, x)
    A, a, B, b, W, c = (params[k] for k in ("A", "a", "B", "b", "W", "c"))
    K, d = A.shape
    acc = {k: 0.0 for k in ("mu", "mu2", "s2", "ls2", "mumu", "rmu", "r", "r2", "ref2")}
    x_ref_mean = np.asarray(x_ref_mean, dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        xc = np.asarray(x[start : start + chunk], dtype=np.float64)
        mu = xc @ A.T + a
        ls2 = xc @ B.T + b
        r = xc - c
        acc["mu"] = acc["mu"] + mu.sum(0)
        acc["mu2"] = acc["mu2"] + np.einsum("nk,nk->k", mu, mu)
        acc["s2"] = acc["s2"] + np.exp(ls2).sum(0)
        acc["ls2"] = acc["ls2"] + ls2.sum(0)
        acc["mumu"] = acc["mumu"] + mu.T @ mu
        acc["rmu"] = acc["rmu"] + r.T @ mu
        acc["r"] = acc["r"] + r.sum(0)
        acc["r2"] = acc["r2"] + np.einsum("nd,nd->", r, r)
        xr = xc - x_ref_mean
        acc["ref2"] = acc["ref2"] + np.einsum("nd,nd->", xr, xr)
    n = x.shape[0]
    return Moments(
        n=n,
        mean_mu=acc["mu"] / n,
        mean_mu2=acc["mu2"] / n,
        mean_s2=acc["s2"] / n,
        mean_logs2=acc["ls2"] / n,
        mu_mu=acc["mumu"] / n,
        r_mu=acc["rmu"] / n,
        mean_r=acc["r"] / n,
        r2=float(acc["r2"] / n),
        x_ref2=float(acc["ref2"] / n),
    )


def per_latent(mom: Moments) -> dict[str, np.ndarray]:
    """The per-latent observables ``m, v, l, R, rho, q, J`` (raw latent order)."""
    return latent_observables(mom.mean_mu2, mom.mean_s2, mom.mean_logs2)


def latent_observables(m: np.ndarray, v: np.ndarray, l: np.ndarray) -> dict[str, np.ndarray]:
    """The table of docs/science.md §3 from ``m = E mu^2``, ``v = E s2``, ``l = E logs2``."""
    q = m + v
    return {
        "posterior_mean_square": m,
        "posterior_variance": v,
        "posterior_log_variance": l,
        "kl_rate": 0.5 * (m + v - 1.0 - l),
        "signal_fraction": m / q,
        "latent_scale": q,
        "jensen_gap": np.log(v) - l,
    }


def rank_by_signal_fraction(rho: np.ndarray) -> np.ndarray:
    """Latent indices ordered by ``rho`` descending (stable, so ties keep index order)."""
    return np.argsort(-np.asarray(rho), kind="stable")


def truncated_distortions(
    mom: Moments, W: np.ndarray, order: np.ndarray, offset: np.ndarray | None = None
) -> np.ndarray:
    """``Dn_k``, ``k = 0..K``: keep latents ``order[:k]`` at their posterior means.

    Pruned latents are set to ``offset`` (default 0, the prior mean; the variant passes the
    training-split mean of ``mu``). Computed exactly from the moments: with
    ``u = mu - offset`` and ``r0 = x - c - W offset``, the residual of keeping set ``S`` is
    ``r0 - W_S u_S`` and its mean square expands into ``E||r0||^2 - 2 sum_S W_i.E[r0 u_i] +
    sum_{S x S} (W_i.W_j) E[u_i u_j]``, accumulated over the ranked order in float64.
    """
    K = W.shape[1]
    o = np.zeros(K) if offset is None else np.asarray(offset, dtype=np.float64)
    Wo = W @ o
    uu = mom.mu_mu - np.outer(mom.mean_mu, o) - np.outer(o, mom.mean_mu) + np.outer(o, o)
    r_u = mom.r_mu - np.outer(mom.mean_r, o) - np.outer(Wo, mom.mean_mu) + np.outer(Wo, o)
    r0_2 = mom.r2 - 2.0 * Wo @ mom.mean_r + Wo @ Wo
    W_o, uu_o, ru_o = W[:, order], uu[np.ix_(order, order)], r_u[:, order]
    g = np.einsum("dk,dk->k", W_o, ru_o)  # W_i . E[r0 u_i]
    H = (W_o.T @ W_o) * uu_o  # (W_i.W_j) E[u_i u_j]
    # sum over the leading k x k block of H: add row k's lower triangle twice, diagonal once
    lower = np.tril(H, -1).sum(axis=1)
    quad = np.cumsum(2.0 * lower + np.diag(H))
    sq = np.concatenate([[r0_2], r0_2 - 2.0 * np.cumsum(g) + quad])
    return sq / mom.x_ref2


def sampled_distortion(
    params: dict, x: np.ndarray, x_ref_mean: np.ndarray, seed: int, chunk: int = CHUNK
) -> float:
    """Normalized distortion of a *sampled* reconstruction, one noise draw per sample.

    The noise comes from ``numpy.random.default_rng(seed)``, so it is reproducible.
    """
    _check(params, x)
    A, a, B, b, W, c = (params[k] for k in ("A", "a", "B", "b", "W", "c"))
    rng = np.random.default_rng(seed)
    num = ref = 0.0
    for start in range(0, x.shape[0], chunk):
        xc = np.asarray(x[start : start + chunk], dtype=np.float64)
        mu, ls2 = xc @ A.T + a, xc @ B.T + b
        z = mu + np.exp(0.5 * ls2) * rng.standard_normal(mu.shape)
        num += np.square(xc - z @ W.T - c).sum()
        ref += np.square(xc - x_ref_mean).sum()
    return float(num / ref)


@dataclass
class Observables:
    """Everything measured at one scan point, latents in ranked order (rank 1 first)."""

    per_latent: dict[str, np.ndarray]  # each (K,), ranked
    latent_index: np.ndarray  # (K,) raw index of the latent at each rank
    train_mean_mu: np.ndarray  # (K,) ranked: training-split mean of mu
    truncated_distortion: np.ndarray  # (K+1,) pruned to 0
    truncated_distortion_train_mean: np.ndarray  # (K+1,) pruned to the training mean of mu
    distortion_posterior_mean: float  # Dn with every latent at its mean
    distortion_sampled: float  # Dn of a sampled reconstruction
    rate: float  # sum_j R_j, nats
    n_eval: int
    # the other pruning rule and the validation split's levels (EXTRA_TRUNCATIONS), each
    # (K+1,) in the evaluation split's rank order; empty when not measured
    extra: dict = field(default_factory=dict)

    @classmethod
    def ranked(cls, obs, order, train_mu, dn, dn_mean, sampled, n_eval, extra=None) -> Observables:
        """The observables of one scan point from per-latent values in raw latent order,
        the ranking ``order`` and the truncated distortions (already in rank order)."""
        return cls(
            extra=dict(extra or {}),
            per_latent={k: v[order] for k, v in obs.items()},
            latent_index=order,
            train_mean_mu=train_mu[order],
            truncated_distortion=dn,
            truncated_distortion_train_mean=dn_mean,
            distortion_posterior_mean=float(dn[-1]),
            distortion_sampled=float(sampled),
            rate=float(obs["kl_rate"].sum()),
            n_eval=int(n_eval),
        )


def _finite_or_raise(obs: dict) -> None:
    if not all(np.all(np.isfinite(v)) for v in obs.values()):
        raise InputError(
            "observables are not finite: the model's posterior overflowed "
            "(check the training log for divergence)"
        )


def measure(
    params: dict,
    x_eval: np.ndarray,
    x_train: np.ndarray,
    seed: int = 0,
    chunk: int = CHUNK,
    x_val: np.ndarray | None = None,
) -> Observables:
    """All observables of docs/science.md §3-4 for a trained model on an evaluation split.

    ``x_train`` supplies ``xbar_train`` (the normalizer's reference) and the training mean
    of ``mu`` (the pruning variant). ``seed`` fixes the noise of the sampled distortion.
    ``x_val`` (the validation split) adds its truncated distortions, ranked as on the
    evaluation split (``EXTRA_TRUNCATIONS``). The ``prior`` rule is the ``zero`` rule
    exactly here: an affine decoder averaged over a pruned latent's prior is its value at
    the prior mean.
    """
    _check(params, x_train, "training split")
    x_train_mean = sum(xc.sum(0) for xc in _chunks(x_train, chunk)) / x_train.shape[0]
    train_mu = x_train_mean @ params["A"].T + params["a"]  # mu is affine: mean of mu = mu(mean)
    mom = posterior_moments(params, x_eval, x_train_mean, chunk)
    obs = per_latent(mom)
    _finite_or_raise(obs)
    order = rank_by_signal_fraction(obs["signal_fraction"])
    W = params["W"]
    dn = truncated_distortions(mom, W, order)
    dn_mean = truncated_distortions(mom, W, order, offset=train_mu)
    sampled = sampled_distortion(params, x_eval, x_train_mean, seed, chunk)
    extra = {"truncated_distortion_prior": dn.copy()}
    if x_val is not None:
        dn_val = truncated_distortions(
            posterior_moments(params, x_val, x_train_mean, chunk), W, order
        )
        extra |= {"truncated_distortion_val": dn_val, "truncated_distortion_prior_val": dn_val}
    return Observables.ranked(obs, order, train_mu, dn, dn_mean, sampled, x_eval.shape[0], extra)


def _chunks(x: np.ndarray, chunk: int):
    for start in range(0, x.shape[0], chunk):
        yield np.asarray(x[start : start + chunk], dtype=np.float64)


def measure_decoded(
    encode,
    decode,
    x_eval: np.ndarray,
    x_train: np.ndarray,
    seed: int = 0,
    chunk: int = CHUNK,
    x_val: np.ndarray | None = None,
) -> Observables:
    """:func:`measure` for a model of any family, through its networks (docs/science.md §9).

    ``encode(x) -> (mu, logs2)`` and ``decode(z) -> xhat`` map float64 arrays (one chunk of
    samples) to float64 arrays. The per-latent observables come from the moments of the
    encoder's output, as for the linear model; ``Dn_k`` decodes the posterior means with
    the ranked latents after ``k`` at 0 (or at their training-split mean of ``mu``, an
    average over the training split: ``mu`` is no longer affine), one decoder pass per
    ``k``; the ``prior`` rule averages the decoder over :data:`PRIOR_DRAWS` fixed draws of
    the pruned latents' prior (seeded by ``seed``). The normalizer, the sampled
    distortion's noise and the rate are those of :func:`measure`, so on a linear model
    both give the same numbers up to rounding (tests/training/test_mlp.py). ``Dn_0`` is the
    distortion of ``xhat(0)`` and may exceed 1. ``x_val`` adds the validation split's
    levels (``EXTRA_TRUNCATIONS``), ranked as on the evaluation split.
    """
    d = x_train.shape[1] if x_train.ndim == 2 else -1
    named = [("training split", x_train), ("evaluation split", x_eval)]
    for name, x in named + ([("validation split", x_val)] if x_val is not None else []):
        if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
            raise InputError(f"{name}: expected a non-empty array of shape (n, {d}), got {x.shape}")
    sum_x = sum_mu = 0.0
    for xc in _chunks(x_train, chunk):
        sum_x = sum_x + xc.sum(0)
        sum_mu = sum_mu + encode(xc)[0].sum(0)
    x_train_mean, train_mu = sum_x / x_train.shape[0], sum_mu / x_train.shape[0]
    acc = {k: 0.0 for k in ("mu2", "s2", "ls2")}
    for xc in _chunks(x_eval, chunk):
        mu, ls2 = encode(xc)
        acc["mu2"] = acc["mu2"] + np.einsum("nk,nk->k", mu, mu)
        acc["s2"] = acc["s2"] + np.exp(ls2).sum(0)
        acc["ls2"] = acc["ls2"] + ls2.sum(0)
    n = x_eval.shape[0]
    obs = latent_observables(acc["mu2"] / n, acc["s2"] / n, acc["ls2"] / n)
    _finite_or_raise(obs)
    order = rank_by_signal_fraction(obs["signal_fraction"])
    codec = (encode, decode, order, train_mu, x_train_mean, chunk)
    levels, sampled = _decoded_levels(*codec, x_eval, np.random.default_rng(seed), seed)
    extra = {"truncated_distortion_prior": levels["prior"]}
    if x_val is not None:
        val, _ = _decoded_levels(*codec, x_val, None, seed, rules=("zero",))
        extra |= {
            "truncated_distortion_val": val["zero"],
            "truncated_distortion_prior_val": val["prior"],
        }
    dn, dn_mean = levels["zero"], levels["mean"]
    return Observables.ranked(obs, order, train_mu, dn, dn_mean, sampled, n, extra)


def _decoded_levels(
    encode, decode, order, train_mu, x_ref_mean, chunk, x, rng, seed, rules=("zero", "mean")
):
    """``Dn_k``, ``k = 0..K``, of ``x`` under the pruning rules ``rules`` (``zero``,
    ``mean``) and ``prior``, normalized by ``E ||x - xbar_train||^2``, and, with ``rng`` (the
    sampled distortion's noise, drawn as :func:`sampled_distortion` draws it), the
    normalized distortion of a sampled reconstruction (else NaN). The validation split
    needs no ``mean`` level: leaving it out saves a twelfth of a point's decodes."""
    K = order.size
    sq = {rule: np.zeros(K + 1) for rule in (*rules, "prior")}
    prior_rng = np.random.default_rng([int(seed), 2])  # the prior rule's fixed draws
    sampled = ref = 0.0
    for xc in _chunks(x, chunk):
        mu, ls2 = encode(xc)
        half = prior_rng.standard_normal((PRIOR_DRAWS // 2, *mu.shape))
        draws = np.concatenate([half, -half])  # antithetic: an affine decoder averages to 0
        z = {"zero": np.zeros_like(mu), "mean": np.broadcast_to(train_mu, mu.shape).copy()}
        for k in range(K + 1):
            if k:
                j = order[k - 1]
                z["zero"][:, j] = z["mean"][:, j] = draws[:, :, j] = mu[:, j]
            for rule in rules:
                sq[rule][k] += np.square(xc - decode(z[rule])).sum()
            xhat = sum(decode(draws[s]) for s in range(PRIOR_DRAWS)) / PRIOR_DRAWS
            sq["prior"][k] += np.square(xc - xhat).sum()
        if rng is not None:
            zs = mu + np.exp(0.5 * ls2) * rng.standard_normal(mu.shape)
            sampled += np.square(xc - decode(zs)).sum()
        ref += np.square(xc - x_ref_mean).sum()
    levels = {rule: v / ref for rule, v in sq.items()}
    return levels, (sampled / ref if rng is not None else float("nan"))


def reconstruction_distortion(
    encode, decode, x_eval: np.ndarray, x_train: np.ndarray, chunk: int = CHUNK
) -> float:
    """``E_eval ||x - decode(mu(x))||^2 / E_eval ||x - xbar_train||^2``: every latent kept
    at its posterior mean, normalized as ``Dn_k`` is (docs/science.md §4.2), so it equals
    :func:`measure_decoded`'s ``Dn_K`` at one decoder pass. The distortion of a
    deterministic autoencoder (the baseline of docs/science.md §9), whose ``encode`` gives
    its code as ``mu``. ``encode``, ``decode``: as for :func:`measure_decoded`; float64."""
    d = x_train.shape[1] if x_train.ndim == 2 else -1
    for name, x in (("training split", x_train), ("evaluation split", x_eval)):
        if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
            raise InputError(f"{name}: expected a non-empty array of shape (n, {d}), got {x.shape}")
    x_train_mean = sum(xc.sum(0) for xc in _chunks(x_train, chunk)) / x_train.shape[0]
    err = ref = 0.0
    for xc in _chunks(x_eval, chunk):
        err += float(np.square(xc - decode(encode(xc)[0])).sum())
        ref += float(np.square(xc - x_train_mean).sum())
    return err / ref
