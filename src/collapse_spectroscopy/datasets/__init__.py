"""Dataset sources, stacking, the spatial-block split and the prepared dataset (docs/science.md §5).

Modules, in the order data flows through them:

``worldclim``  WorldClim 2.1 archive: download (pooch, resumable), SHA-256 checks, 19 layers
``rasters``    any stack of single-band GeoTIFFs (folder, zip, list) on one grid
``synthetic``  the embedded offline default with a declared spectrum (gaussian kind), or
``synthetic_manifold``  its manifold kind: a nonlinear dataset with a known answer
``table``      CSV / Parquet / NetCDF samples x features
``arrays``     a .npy / .npz of samples of any shape (images), flattened into features
``rows``       the samples a table or arrays file drops for a missing value, counted
``sources``    ``dataset.source`` -> samples
``stack``      valid cells -> samples (x, lon, lat, cell area on the ellipsoid)
``split``      equal-area spatial blocks (or random / given split for tables and arrays)
``splitmap``   the split map (geopandas + matplotlib)
``standardize`` ``dataset.standardize``: the training statistics every split is scaled by
``prepare``    the ``prepare`` step: split, standardize, write the run's files (its
               subcommand: ``collapse_spectroscopy.cli.data``)
"""

from collapse_spectroscopy.datasets.prepare import OUTPUTS, SplitOptions, prepare
from collapse_spectroscopy.datasets.sources import SOURCES, SourceOptions

__all__ = ["OUTPUTS", "SOURCES", "SourceOptions", "SplitOptions", "prepare"]
