"""collapse-spectroscopy: posterior collapse as automatic spectral pruning in beta-VAEs.

The library under the Snakemake workflow. Modules follow the paper (``docs/science.md``):

- :mod:`.units`        the normalized temperature ``T = beta * sigma2 / V`` (docs/science.md §2)
- :mod:`.model`        the linear Gaussian VAE and its loss (docs/science.md §1)
- :mod:`.training`     equilibrium training of one scan point (docs/science.md §5)
- :mod:`.observables`  per-latent observables and truncated distortions (docs/science.md §3, §4)
- :mod:`.spectra`      collapse, utility and PCA spectra and their fits (docs/science.md §4)
- :mod:`.equilibrium`  the linear VAE's analytic equilibrium (docs/science.md §3, §7)
- :mod:`.scanfile`     one scan point as a NetCDF file, and the gathered ``scan.nc``
- :mod:`.figures`      the paper's Figs 1-4 (docs/science.md §6)
- :mod:`.datasets`     sources, the spatial split, the prepared dataset (docs/science.md §5)
"""

__version__ = "0.1.0"
