"""The ``arrays`` source: samples from a NumPy file, such as a stack of images.

* ``.npy``: one array of shape (n, ...): n samples, each of any shape (an 8 x 8 image,
  a vector, a 3 x 32 x 32 colour image).
* ``.npz``: the array ``x`` as above and, optionally, ``split`` (n,), each sample's split
  as an integer (0 train, 1 val, 2 test) or a string (train, val, test, or the aliases a
  table's split column takes), and ``sample_shape``, the shape of one sample as integers
  whose product is the number of features d (for ``x`` stored flat as (n, d)). No other
  key: a misspelt ``split`` would otherwise fall back silently to a random split.

Each sample is flattened (C order) into d features named after their place in it
(``x_3_5``: row 3, column 5 of an image), and the shape it had (``sample_shape``, else
``x.shape[1:]``) is kept, so that a model can put an image back together. Without
``split``, ``prepare`` splits the samples at random as it does a table without a split
column. Values must be integers or floats; the file is read without pickle, so a file of
Python objects is refused rather than run. A sample with a non-finite value, or one equal
to ``dataset.nodata``, is dropped and counted as a table row is (:mod:`.rows`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from collapse_spectroscopy.datasets.rasters import value_in_dtype
from collapse_spectroscopy.datasets.rows import complete_rows, row_counts
from collapse_spectroscopy.datasets.split import split_codes
from collapse_spectroscopy.datasets.stack import IMPLAUSIBLE_ABS, Samples
from collapse_spectroscopy.errors import InputError

ARRAYS_SUFFIXES = (".npy", ".npz")
NPZ_KEYS = ("x", "split", "sample_shape")
_NUMBERS = "iuf"  # numpy dtype kinds of the values a sample may hold
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"  # the first bytes of a .npy, an .npz


def _where(path: Path) -> str:
    return f"arrays {str(path)!r}"


def _read_error(path: Path, key: str, exc: Exception) -> InputError:
    """What is wrong with a file numpy could not read (or its array ``key``)."""
    if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
        return InputError(
            f"{_where(path)}: array {key!r} holds Python objects (dtype object or pickled "
            "data): expected integers or floats, e.g. saved as x.astype(np.float32)"
        )
    return InputError(
        f"{_where(path)} cannot be read ({type(exc).__name__}: {exc}): expected a .npy or "
        ".npz file written by numpy.save or numpy.savez"
    )


def _member(loaded, key: str, path: Path) -> np.ndarray:
    try:
        return loaded[key]
    except Exception as exc:  # numpy and zipfile raise many types for a bad member
        raise _read_error(path, key, exc) from exc


def _load(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the file at ``path``, by :data:`NPZ_KEYS` (a ``.npy``: ``x`` only)."""
    if not path.is_file():
        raise InputError(f"dataset.path: {_where(path)} does not exist")
    if not path.name.lower().endswith(ARRAYS_SUFFIXES):
        raise InputError(
            f"dataset.path: {_where(path)} has an unknown format: expected a .npy or .npz file"
        )
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if not magic.startswith((_NPY_MAGIC, _ZIP_MAGIC)):  # np.load would try it as a pickle
        raise _read_error(path, "x", ValueError(f"it starts with {magic!r}"))
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # a truncated file, pickled objects, no numpy file at all
        raise _read_error(path, "x", exc) from exc
    if isinstance(loaded, np.ndarray):
        return {"x": loaded}
    with loaded:
        if set(loaded.files) - set(NPZ_KEYS) or "x" not in loaded.files:
            raise InputError(
                f"{_where(path)} holds the arrays {sorted(loaded.files)}: expected x "
                "(samples first) and optionally split and sample_shape, no other"
            )
        return {key: _member(loaded, key, path) for key in loaded.files}


def sample_shape_of(path: str | os.PathLike) -> list[int] | None:
    """The shape of one sample of the arrays file at ``path``, from the headers alone (a
    custom model is checked on it when the workflow starts, before ``prepare`` has read
    the file); None where the file cannot tell, and ``prepare`` then says why."""
    path = Path(path)
    try:
        if path.name.lower().endswith(".npy"):
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        else:
            with zipfile.ZipFile(path) as zf, zf.open("x.npy") as fh:
                version = np.lib.format.read_magic(fh)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape = read(fh)[0]
            with np.load(path, allow_pickle=False) as loaded:
                if "sample_shape" in loaded.files:
                    return [int(s) for s in np.asarray(loaded["sample_shape"]).ravel()]
    except Exception:  # any unreadable file: prepare reads it fully and names the problem
        return None
    return [int(s) for s in shape[1:]] if len(shape) >= 2 else None


def _samples_array(x: np.ndarray, path: Path) -> np.ndarray:
    """``x`` checked to hold numbers, samples first, at least one of each."""
    if x.dtype.kind not in _NUMBERS:
        raise InputError(
            f"{_where(path)}: x has dtype {x.dtype}: expected integers or floats, e.g. "
            "saved as x.astype(np.float32)"
        )
    if x.ndim < 2:
        raise InputError(
            f"{_where(path)}: x has shape {x.shape}: expected samples first and at least 2 "
            "dimensions, (n, ...); one feature per sample is (n, 1)"
        )
    if x.shape[0] == 0 or x[0].size == 0:
        raise InputError(
            f"{_where(path)}: x has shape {x.shape}: expected at least one sample of at "
            "least one value"
        )
    return x


def _sample_shape(given: np.ndarray | None, x: np.ndarray, path: Path) -> list[int]:
    """The shape of one sample: ``given`` (the npz's ``sample_shape``), checked to be
    positive integers whose product is the features per sample, else ``x.shape[1:]``."""
    d = int(np.prod(x.shape[1:]))
    if given is None:
        return [int(s) for s in x.shape[1:]]
    ok = given.dtype.kind in "iu" and given.ndim == 1 and given.size > 0
    if not (ok and np.all(given >= 1) and int(np.prod(given)) == d):
        raise InputError(
            f"{_where(path)}: sample_shape is {given.tolist()!r} ({given.dtype}): expected "
            f"positive integers whose product is {d}, the values per sample of x {x.shape}"
        )
    return [int(s) for s in given]


def _split_codes(split: np.ndarray, n: int, path: Path) -> np.ndarray:
    """The npz's ``split`` as codes (int8: 0 train, 1 val, 2 test), one per sample."""
    if split.shape != (n,):
        raise InputError(
            f"{_where(path)}: split has shape {split.shape}: expected one label per sample "
            f"of x, shape ({n},)"
        )
    if split.dtype.kind in "iu":
        bad = sorted(set(np.unique(split).tolist()) - {0, 1, 2})
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
            raise InputError(
                f"{_where(path)}: split holds {shown}: expected 0 (train), 1 (val) or 2 (test)"
            )
        return split.astype(np.int8)
    if split.dtype.kind in "US":
        labels = np.char.decode(split, "utf-8") if split.dtype.kind == "S" else split
        return split_codes(labels, f"{_where(path)}: split")
    raise InputError(
        f"{_where(path)}: split has dtype {split.dtype}: expected integers 0/1/2 or "
        "strings train/val/test"
    )


def _check_magnitudes(x: np.ndarray, path: Path) -> None:
    """Refuse values beyond ±1e30 (:data:`.stack.IMPLAUSIBLE_ABS`): fill values such as
    float32's -3.4e38, never measurements, and beyond float32 once prepared."""
    huge = np.abs(x) > IMPLAUSIBLE_ABS
    if huge.any():
        value = x[huge][0]
        raise InputError(
            f"{_where(path)}: {int(huge.sum()):,} values of the complete samples lie beyond "
            f"±{IMPLAUSIBLE_ABS:g} (such as {value:g}), which looks like a nodata value: "
            f"declare it with dataset.nodata: {value:g} (prepare --nodata={value:g})"
        )


def _feature_names(shape: list[int]) -> list[str]:
    """``x_<i>_<j>...``: each feature named by its index in the sample's shape."""
    return ["x_" + "_".join(map(str, at)) for at in np.ndindex(*shape)]


def read_arrays(path: str | os.PathLike, nodata: float | None = None) -> Samples:
    """Samples of an arrays file (``.npy`` or ``.npz``, module docstring): each flattened
    into float32 features, with its split if the file gives one and the per-sample shape.

    ``nodata`` (``dataset.nodata``) marks missing values, compared in x's own dtype.

    Raises
    ------
    InputError
        A missing or unreadable file, an unknown key, values that are not numbers, x of
        fewer than 2 dimensions, a bad split or sample_shape, no complete sample.
    """
    path = Path(path)
    arrays = _load(path)
    raw = _samples_array(arrays["x"], path)
    n = raw.shape[0]
    shape = _sample_shape(arrays.get("sample_shape"), raw, path)
    split = arrays.get("split")
    codes = None if split is None else _split_codes(split, n, path)
    flat = raw.reshape(n, -1)
    x = flat.astype(np.float64)
    nd = None if nodata is None else value_in_dtype(nodata, raw.dtype)
    if nd is not None:
        x[flat == nd] = np.nan
    complete = complete_rows(x, _where(path))
    x = x[complete]
    _check_magnitudes(x, path)
    reason = (
        "a non-finite value"
        + (f" or dataset.nodata = {nodata!r}" if nodata is not None else "")
        + " in a sample"
    )
    info = {
        "arrays": str(path),
        **row_counts(complete, reason),
        "x_shape": list(raw.shape),
        "x_dtype": str(raw.dtype),
        "split_given": codes is not None,
    }
    return Samples(
        x=x.astype(np.float32),
        feature_names=_feature_names(shape),
        split=None if codes is None else codes[complete],
        index=np.flatnonzero(complete),
        info=info,
        sample_shape=shape,
    )
