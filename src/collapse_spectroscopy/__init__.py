"""collapse-spectroscopy: posterior collapse as automatic spectral pruning in beta-VAEs.

The library under the Snakemake workflow. Modules follow the paper (``../shared/SPEC.md``):

- :mod:`.units`        the normalized temperature ``T = beta * sigma2 / V`` (SPEC §2)
- :mod:`.model`        the linear Gaussian VAE and its loss (SPEC §1)
- :mod:`.training`     equilibrium training of one scan point (SPEC §5)
- :mod:`.observables`  per-latent observables and truncated distortions (SPEC §3, §4)
- :mod:`.spectra`      collapse, utility and PCA spectra and their fits (SPEC §4)
- :mod:`.equilibrium`  the analytic equilibrium of the linear VAE, the oracle (SPEC §3, §7)
- :mod:`.scanfile`     one scan point as a NetCDF file, and the gathered ``scan.nc``
- :mod:`.figures`      the paper's Figs 1-4 (SPEC §6)
- :mod:`.datasets`     sources, stacking, the spatial split, the prepared dataset (SPEC §5)
"""

__version__ = "0.1.0"
