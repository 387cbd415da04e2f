"""Studies (docs/science.md §11): the long comparison table of a study's runs (spectra per
value, principal angles, map correlations).
"""
