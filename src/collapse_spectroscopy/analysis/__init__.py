"""Analysis of a scan (docs/science.md §2-§4, §10): the T <-> beta scale, the analytic
equilibrium, per-latent observables and per-mode totals, PCA references, thresholds and
utilities, the spectra table and its summary, seed intervals and utility concentration.
"""
