"""Files on disk: atomic all-or-none writes, the prepared dataset every training job loads, and
the scan-point and gathered scan NetCDF files.
"""
