"""collapse-spectroscopy: posterior collapse as automatic spectral pruning in beta-VAEs.

The library under the Snakemake workflow, one package per stage of a run, in the order a
run flows (docs/architecture.md; the science is docs/science.md):

- :mod:`.config`    the schema of every key and default, checks by key, the scan grid
- :mod:`.datasets`  sources, coarse-graining, the spatial split, standardization (§5, §11)
- :mod:`.store`     atomic writes, the prepared dataset, scan-point and scan files (§4)
- :mod:`.models`    the linear VAE (§1) and the MLP VAE (§9)
- :mod:`.analysis`  T <-> beta, the analytic equilibrium, observables, PCA, thresholds,
  utilities, the spectra table, seed intervals, utility concentration (§2-§4, §9, §10)
- :mod:`.training`  the protocol around any engine, one or several scan points, the engines
- :mod:`.jobs`      one training job: train its points, measure, write all or none
- :mod:`.maps`      latent maps and loadings (§10)
- :mod:`.studies`   the comparison of a study's runs (§11)
- :mod:`.figures`   Figs 1-5, maps and study drawings (§6)
- :mod:`.cli`       the ``collapse-spectroscopy`` command, one subcommand per workflow rule
"""

__version__ = "0.1.0"
