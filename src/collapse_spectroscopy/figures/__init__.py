"""The paper's Figs 1-4 and the utility concentration (Fig 5), drawn from a gathered scan
and its spectra table (docs/science.md §6, §9).

:data:`REGISTRY` maps each figure's name to its ``draw``, importable without matplotlib;
:func:`make_figures` draws them all and writes each as PNG and PDF. docs/figures.md says
what each figure shows, how to add one, its inputs and extra inputs, and the conventions
all figures share.
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

# The extra inputs a figure may declare: keyword-only parameters of its draw (docs/figures.md).
EXTRA_INPUTS = ("tolerances", "null_run", "fig1_view", "autoencoder", "refined", "selection")


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
    autoencoder=None,
    refined=None,
    selection=None,
) -> list[Path]:
    """Draw every figure of :data:`REGISTRY` and write each as PNG and PDF into ``outdir``;
    return the paths (two per figure).

    ``rho_min`` is the fit cut the spectra were computed with (the run's
    ``spectra.rho_min``): it decides which ranks are coloured and is marked in Fig 1b.
    ``tolerances`` (the run's ``spectra.tolerances``) and ``null_run`` (a
    :class:`.common.NullRun`), ``fig1_view`` (the run's ``figures.fig1_view``) and
    ``autoencoder`` (the table of the run's autoencoder baseline) and ``refined`` (the
    temperatures each refinement round added) and ``selection`` (the spectra's pruning
    rule and selection split, :class:`.analysis.selection.Selection`: which point each
    ``Dn*_k`` came from) go to the figures that declare them; ``None`` leaves a figure's
    own default (the schema's tolerances; no null run; Fig 1 per latent; no baseline; no
    refinement; the paper's test-split choice).
    """
    extras = {
        "tolerances": tolerances,
        "null_run": null_run,
        "fig1_view": fig1_view,
        "autoencoder": autoencoder,
        "refined": refined,
        "selection": selection,
    }
    extras = {k: v for k, v in extras.items() if v is not None}
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for stem, draw in REGISTRY.items():
        kwargs = {k: extras[k] for k in declared_extras(draw) if k in extras}
        paths += save_figure(draw(scan, spectra, rho_min=rho_min, **kwargs), outdir, stem)
    return paths
