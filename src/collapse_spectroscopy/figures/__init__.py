"""The paper's Figs 1-4 and the utility concentration (Fig 5) from a gathered scan and its
spectra table (docs/science.md §6, §9).

:data:`REGISTRY` maps each figure's name to its drawing function, in the paper's order;
the ``figures`` command, :func:`make_figures` and the workflow's list of figure outputs all
read it. The names are known without importing matplotlib (each figure module is imported
when its function is first looked up), because the workflow reads them on every start.
A figure is the module ``figures/<name>.py`` with a function
``draw(scan, spectra, rho_min) -> matplotlib.figure.Figure`` (built without pyplot, so
nothing needs closing and no GUI backend is touched), its caption
``workflow/report/<name>.rst``, and its name in :data:`NAMES`. :func:`make_figures` writes
each as PNG (300 dpi) and PDF, atomically (:func:`save_figure`).

Extra inputs: a figure that reads more than the scan, the table and ``rho_min`` declares
each extra as a keyword-only parameter of its ``draw``, named as in :data:`EXTRA_INPUTS`,
with a default; :func:`make_figures` passes every figure the extras it declares and no
others. The extras are ``tolerances`` (the run's ``spectra.tolerances``; Fig 5),
``null_run`` (a :class:`.common.NullRun`: the name and spectra table of the linear run the
run names as its ``null_run``; Fig 5) and ``fig1_view`` (the run's ``figures.fig1_view``:
Fig 1 per ranked latent or per mode).

Inputs: ``scan`` is the dataset of :func:`.scanfile.gather` (dims ``T``, ``seed``,
``latent`` = rank by signal fraction, ``k``, ``mode``); ``spectra`` is the table of
:func:`.spectra.spectra_table` (or its CSV read back); ``rho_min`` the fit cut the table
was computed with (the run's ``spectra.rho_min``).

Modules: :mod:`.common` (the scan and the table as the figures read them), :mod:`.marks`
(points, lines and legend entries), :mod:`.axes` (temperature axis, tick labels),
:mod:`.style` (rcParams, sizes, colours, line kinds), one module per figure.

Conventions shared by Figs 1-4 (see :mod:`.style`); every mark is named in the
figure's legend, and the captions (``workflow/report/*.rst``) say the rest. Fig 5 compares
models, not ranks: one colour and marker per model (:mod:`.fig5_utility_concentration`),
hollow circles and PCA squares as below.

- **Colour = ranked mode.** Ranks ``1..n`` are coloured on a discrete sequential map with a
  colour bar, where ``n`` is the larger of (a) the highest rank whose signal fraction ever
  exceeds the run's ``rho_min`` at some scan point and (b) the number of PCA modes with
  ``lambda_k/V`` above :data:`.spectra.PCA_FLOOR` (capped at ``K``). Higher ranks --
  latents that never become active, e.g. the spare latents of ``K = 32 > d = 19`` -- are
  drawn as small light-grey points without mean lines, fits, guides or theory, behind the
  coloured data; the legend says so (``rank > n``) whenever they are drawn, and the colour
  bar ends in a grey segment ``n+1..K`` (:meth:`.style.RankColors.colorbar`).
- **Data**: one small filled marker per (T, seed) (seeds pooled) and a thin solid line
  through the seed mean (``nanmean``, connected across temperatures where no seed ran).
  With one seed the legend has one entry (``VAE, seed s``: the line just joins the
  points), with several, ``VAE, per seed`` and ``mean of N seeds``. In Fig 1's middle
  panel the fixed-exponent fit ``rho = 1 - T/T_k`` of the spectra table (a broad pale
  band, unlike the thin mean lines) replaces the mean line, and a dotted line marks
  ``rho_min``. Fig 2's right panel and Fig 3 draw one point per ranked mode.
- **Under-equilibrated points** (:func:`.stopping.under_equilibrated`: stopped at
  ``max_updates`` before the early-stopping test passed) are hollow markers. A quantity
  built from such a point is hollow too: in Fig 2b a ``Dn*_k`` whose best scan point is
  one; in Fig 3 a rank the spectra table flags ``under_equilibrated`` (leaving such
  points out moves its threshold or utility by more than 5 %,
  :func:`.spectra.under_equilibrated_ranks`).
- **Legends** name what each mark is, in the mark's own look, without panel prefixes (a
  mark drawn in one panel only needs none) or titles; what needs a sentence is in the
  caption.
- **Figure sizes**: Figs 1 and 3 are one column wide (3.4 in), Figs 2, 4 and 5 (two panels
  side by side) the full text width (7 in).
- **Theory**: the analytic equilibrium (:mod:`.equilibrium`) of the *training* PCA
  spectrum ``pca_ratio`` (the spectrum the model is trained on, not a synthetic source's
  declared ``true_spectrum``), thin dashed, in the colour of the matching rank (rank ``k``
  <-> the k-th largest eigenvalue). Modes with ``lambda_k/V <= PCA_FLOOR`` (an exactly
  dependent feature, ``~1e-16``) are left out; with ``K < d`` only the top ``K`` modes are.
  In Fig 4 the equilibrium is the same for every rank (``q = 1``, ``J = 0``) and is drawn
  once, in black.
- **PCA references** are squares (open, in Figs 2b and 3), never circles: a hollow circle
  always means an under-equilibrated VAE point.
- Temperatures are plotted on a log axis over the scanned range; NaN (missing scan
  points) and, on log axes, non-positive values are skipped; short log axes get readable
  1-2-5 ticks (:mod:`.axes`).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from collapse_spectroscopy.store.atomic import atomic_path

# The figures in the paper's order; each is the module of that name in this package.
NAMES = (
    "fig1_collapse_scan",
    "fig2_truncated_distortion",
    "fig3_duality",
    "fig4_latent_scale",
    "fig5_utility_concentration",
)

# The extra inputs a figure may declare (keyword-only parameters of its draw), see above.
EXTRA_INPUTS = ("tolerances", "null_run", "fig1_view")


class _Registry(Mapping):
    """Figure name -> ``draw`` of the module of that name, imported on first lookup."""

    def __getitem__(self, name: str) -> Callable:
        if name not in NAMES:
            raise KeyError(name)
        return importlib.import_module(f"{__name__}.{name}").draw

    def __iter__(self) -> Iterator[str]:
        return iter(NAMES)

    def __len__(self) -> int:
        return len(NAMES)

    def __repr__(self) -> str:
        return f"REGISTRY({', '.join(NAMES)})"


REGISTRY: Mapping[str, Callable] = _Registry()


def save_figure(fig, outdir: str | os.PathLike, stem: str) -> list[Path]:
    """Write ``fig`` as ``stem.png`` (300 dpi) and ``stem.pdf`` into ``outdir``, atomically.

    Timestamps are left out of the PDF so that identical inputs give identical files.
    """
    from collapse_spectroscopy.figures.style import DPI, style  # lazy: matplotlib

    paths = []
    with style():
        for fmt, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
            path = Path(outdir) / f"{stem}.{fmt}"
            with atomic_path(path) as tmp:
                # tight bounding box: no axis label is ever clipped at the column width
                fig.savefig(
                    tmp,
                    format=fmt,
                    dpi=DPI,
                    metadata=metadata,
                    bbox_inches="tight",
                    pad_inches=0.02,
                )
            paths.append(path)
    return paths


def declared_extras(draw: Callable) -> tuple[str, ...]:
    """The extra inputs (:data:`EXTRA_INPUTS`) a figure's ``draw`` declares."""
    params = inspect.signature(draw).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name in EXTRA_INPUTS)


def make_figures(
    scan,
    spectra,
    outdir: str | os.PathLike,
    rho_min: float,
    *,
    tolerances=None,
    null_run=None,
    fig1_view=None,
) -> list[Path]:
    """Draw every figure of :data:`REGISTRY` and write each as PNG and PDF into ``outdir``;
    return the paths (two per figure).

    ``rho_min`` is the fit cut the spectra were computed with (the run's
    ``spectra.rho_min``): it decides which ranks are coloured and is marked in Fig 1b.
    ``tolerances`` (the run's ``spectra.tolerances``) and ``null_run`` (a
    :class:`.common.NullRun`) and ``fig1_view`` (the run's ``figures.fig1_view``) go to the
    figures that declare them; ``None`` leaves a figure's own default (the schema's
    tolerances; no null run; Fig 1 per latent).
    """
    extras = {"tolerances": tolerances, "null_run": null_run, "fig1_view": fig1_view}
    extras = {k: v for k, v in extras.items() if v is not None}
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for stem, draw in REGISTRY.items():
        kwargs = {k: extras[k] for k in declared_extras(draw) if k in extras}
        paths += save_figure(draw(scan, spectra, rho_min=rho_min, **kwargs), outdir, stem)
    return paths
