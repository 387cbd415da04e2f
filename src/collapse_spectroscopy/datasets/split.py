"""Train / validation / test splits: spatial blocks for grids, random or given for the rest.

Spatial-block rule (docs/science.md §5; :data:`SPATIAL_RULE` is written into ``split_summary.json``)
------------------------------------------------------------------------------------------
1. Cell centres (lon, lat, WGS 84) are projected to the equal-area CRS EPSG:6933
   (NSIDC EASE-Grid 2.0 Global, cylindrical equal-area), where square blocks of
   ``block_km`` x ``block_km`` are cut on a grid anchored at the projection origin
   (lon 0°, equator): block ``(ix, iy) = floor(x / B), floor(y / B)``.
2. A block's weight is its land area: the summed ellipsoidal area of its valid cells.
   Blocks are listed row by row from the north-west (``iy`` descending, ``ix`` ascending).
3. **Area-weighted sampling.** With ``rng = numpy.random.default_rng(seed)``, every block
   gets a key ``log(u) / area`` (``u = rng.random()`` in listing order); sorting by
   decreasing key draws the blocks one at a time without replacement, each draw picking a
   remaining block with probability proportional to its area (Efraimidis & Spirakis 2006).
4. **Held-out blocks.** Walking the draw order, a block is held out while the held-out
   area is still below ``(f_val + f_test) * A``; each held-out block goes to validation
   or test, whichever is further below its own area target ``f * A`` (ties: validation).
   The first block drawn after the target is reached, and every later one, is training.
5. Every block belongs to exactly one split; a cell belongs to its block's split.

The rule is deterministic given the cells, ``block_km``, ``fractions`` and ``seed``.
On WorldClim 2.1 10m with the defaults it gives 504,867 / 149,731 / 153,455 cells against
the paper's 499,599 / 153,897 / 154,027 (+1.1 %, -2.7 %, -0.4 %). Why this rule: drawing
the held-out blocks with probability proportional to area favours large interior blocks,
whose cells are larger than average, so the held-out splits get a smaller share of the
cells than of the area -- as in the paper, where 60 % of the area holds 61.8 % of the cells.
Over split seeds 0..299 this rule averages 62.9 / 18.6 / 18.5 % of the cells (std about
1 % each); the paper's split lies within one std of that, and 16 % of those seeds land
within 3 % of all three paper counts (seed 0 among them): the match is a draw from a
distribution centred near the paper's numbers, not an exact reproduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyproj

from collapse_spectroscopy.config.settings import section_defaults
from collapse_spectroscopy.errors import InputError

SPLITS = ("train", "val", "test")
EQUAL_AREA_CRS = "EPSG:6933"
_DEFAULTS = section_defaults("split")  # the schema is the one home of these defaults
DEFAULT_FRACTIONS = tuple(_DEFAULTS["fractions"])
DEFAULT_BLOCK_KM = float(_DEFAULTS["block_km"])
DEFAULT_SEED = int(_DEFAULTS["seed"])

SPATIAL_RULE = (
    "Cell centres are projected to EPSG:6933 (equal-area) and cut into square blocks of "
    "block_km on a grid anchored at the projection origin. Each block weighs its land area "
    "(sum of its valid cells' ellipsoidal areas). Blocks, listed row by row from the "
    "north-west, get keys log(u)/area with u = numpy.random.default_rng(seed).random(); in "
    "order of decreasing key (area-weighted sampling without replacement) each block is "
    "held out while the held-out area is below (f_val + f_test) of the total, and goes to "
    "validation or test, whichever is further below its area target (ties: validation); "
    "all remaining blocks are training. No block is shared between splits."
)
RANDOM_RULE = (
    "Samples are permuted with numpy.random.default_rng(seed).permutation; the first "
    "round(f_train*n) are training, the next round(f_val*n) validation, the rest test."
)
COLUMN_RULE = "Each sample's split is given by the table's split column."
ARRAY_RULE = "Each sample's split is given by the split array of the arrays file."

SPLIT_ALIASES = {
    "train": 0,
    "training": 0,
    "val": 1,
    "valid": 1,
    "validation": 1,
    "test": 2,
    "testing": 2,
}


def check_fractions(fractions, key: str = "split.fractions") -> np.ndarray:
    """Three positive numbers (train, val, test) that sum to 1, else InputError."""
    try:
        f = np.asarray([float(v) for v in fractions], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{key} = {fractions!r}: expected three numbers (train, val, test)"
        ) from exc
    if f.shape != (3,):
        raise InputError(
            f"{key} = {list(fractions)!r}: expected three numbers (train, val, test), got {f.size}"
        )
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise InputError(f"{key} = {f.tolist()}: expected three positive fractions")
    if abs(f.sum() - 1.0) > 1e-6:
        raise InputError(
            f"{key} = {f.tolist()} sums to {f.sum():.6g}: expected fractions "
            "that sum to 1 (train, val, test)"
        )
    return f


#: the draw of ``split.train_subsample``, apart from the block draw of the same seed
SUBSAMPLE_STREAM = 1
SUBSAMPLE_RULE = (
    "The training samples (in their order) are permuted with "
    "numpy.random.default_rng([seed, 1]).permutation and the first max(1, round(f * n_train)) "
    "are kept, in their order: a smaller share keeps a subset of a larger one's samples. "
    "Validation and test are untouched; standardization uses the kept samples."
)


def check_train_subsample(value, key: str = "split.train_subsample") -> float:
    """A share in (0, 1], else InputError naming ``key``."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0 < f <= 1:
        raise InputError(
            f"{key} = {value!r}: expected the share of the training split to keep, in (0, 1]"
        )
    return f


def subsample_train(train: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The training mask ``train`` thinned to a seeded share ``fraction`` of its samples
    (:data:`SUBSAMPLE_RULE`; docs/science.md §11). ``fraction = 1`` returns ``train``."""
    f = check_train_subsample(fraction)
    if f == 1:
        return train
    where = np.flatnonzero(train)
    order = np.random.default_rng([int(seed), SUBSAMPLE_STREAM]).permutation(where.size)
    kept = np.zeros_like(train)
    kept[where[order[: max(1, int(round(f * where.size)))]]] = True
    return kept


def check_block_km(block_km, key: str = "split.block_km") -> float:
    try:
        b = float(block_km)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{key} = {block_km!r}: expected a positive number of km") from exc
    if not np.isfinite(b) or b <= 0:
        raise InputError(f"{key} = {block_km!r}: expected a positive number of km")
    return b


@dataclass
class SplitResult:
    """A split label per sample plus how it was made.

    Attributes
    ----------
    labels : ndarray int8 (n,)
        0 train, 1 validation, 2 test.
    method : {"spatial_blocks", "random", "column"}
    rule : str
        The assignment rule in words.
    parameters : dict
    blocks : DataFrame or None
        One row per block (spatial split): ``block``, ``ix``, ``iy``, ``x_min_m``,
        ``y_min_m``, ``size_m``, ``area_km2``, ``n_samples``, ``draw``, ``split``.
    """

    labels: np.ndarray
    method: str
    rule: str
    parameters: dict = field(default_factory=dict)
    blocks: pd.DataFrame | None = None

    def mask(self, name: str) -> np.ndarray:
        return self.labels == SPLITS.index(name)


def _empty_check(labels: np.ndarray, what: str) -> None:
    counts = np.bincount(labels, minlength=3)
    for name, c in zip(SPLITS, counts, strict=True):
        if c == 0:
            raise InputError(
                f"{what} leaves split {name!r} empty (samples per split: "
                f"{dict(zip(SPLITS, counts.tolist(), strict=True))})"
            )


def project_equal_area(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (degrees, WGS 84) to EPSG:6933 metres."""
    t = pyproj.Transformer.from_crs("EPSG:4326", EQUAL_AREA_CRS, always_xy=True)
    x, y = t.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return np.asarray(x), np.asarray(y)


@dataclass(frozen=True)
class _Blocks:
    """The blocks holding at least one cell, listed row by row from the north-west."""

    of_cell: np.ndarray  # (n,) each cell's block, an index into the arrays below
    ix: np.ndarray
    iy: np.ndarray
    area_km2: np.ndarray  # summed area of the block's cells
    n_samples: np.ndarray


def _cut_blocks(x: np.ndarray, y: np.ndarray, area_km2: np.ndarray, size: float) -> _Blocks:
    """Blocks of side ``size`` metres on the grid anchored at the projection origin (rule
    steps 1 and 2)."""
    ix = np.floor(x / size).astype(np.int64)
    iy = np.floor(y / size).astype(np.int64)
    # Row-major listing from the north-west: iy descending, then ix ascending.
    width = ix.max() - ix.min() + 1
    key = (iy.max() - iy) * width + (ix - ix.min())
    block_key, inverse = np.unique(key, return_inverse=True)
    n_blocks = block_key.size
    return _Blocks(
        of_cell=inverse,
        ix=ix.min() + block_key % width,
        iy=iy.max() - block_key // width,
        area_km2=np.bincount(inverse, weights=area_km2, minlength=n_blocks),
        n_samples=np.bincount(inverse, minlength=n_blocks),
    )


def _draw_held_out(b_area: np.ndarray, f: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each block's split label and its place in the draw order (rule steps 3 and 4)."""
    n_blocks = b_area.size
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore"):
        keys = np.log(rng.random(n_blocks)) / b_area
    order = np.argsort(-keys, kind="stable")
    total = b_area.sum()
    target = f * total
    labels_b = np.zeros(n_blocks, dtype=np.int8)
    held = 0.0
    assigned = np.zeros(2)
    for b in order:
        if held >= target[1] + target[2]:
            break
        s = int(np.argmax(target[1:] - assigned))
        labels_b[b] = 1 + s
        assigned[s] += b_area[b]
        held += b_area[b]
    draw = np.empty(n_blocks, dtype=np.int64)
    draw[order] = np.arange(n_blocks)
    return labels_b, draw


def _blocks_table(
    blocks: _Blocks, size: float, draw: np.ndarray, labels_b: np.ndarray
) -> pd.DataFrame:
    """One row per block (:attr:`SplitResult.blocks`)."""
    return pd.DataFrame(
        {
            "block": np.arange(blocks.ix.size),
            "ix": blocks.ix,
            "iy": blocks.iy,
            "x_min_m": blocks.ix * size,
            "y_min_m": blocks.iy * size,
            "size_m": size,
            "area_km2": blocks.area_km2,
            "n_samples": blocks.n_samples,
            "draw": draw,
            "split": np.asarray(SPLITS)[labels_b],
        }
    )


def spatial_block_split(
    lon,
    lat,
    area_km2,
    block_km=DEFAULT_BLOCK_KM,
    fractions=DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
) -> SplitResult:
    """Assign equal-area square blocks to train/val/test (rule in the module docstring).

    Parameters
    ----------
    lon, lat : ndarray (n,)
        Cell centres in degrees (WGS 84).
    area_km2 : ndarray (n,)
        Cell areas in km².
    block_km : float
        Side of a block in km (``split.block_km``).
    fractions : three floats
        Area targets of train, validation, test (``split.fractions``).
    seed : int
        ``split.seed``.

    Raises
    ------
    InputError
        Bad fractions or block size, or a block size that leaves a split empty.
    """
    f = check_fractions(fractions)
    b_km = check_block_km(block_km)
    seed = int(seed)
    area_km2 = np.asarray(area_km2, dtype=np.float64)
    x, y = project_equal_area(lon, lat)
    size = b_km * 1000.0
    blocks = _cut_blocks(x, y, area_km2, size)
    n_blocks = blocks.ix.size
    labels_b, draw = _draw_held_out(blocks.area_km2, f, seed)
    labels = labels_b[blocks.of_cell]
    _empty_check(
        labels,
        f"split.block_km = {b_km:g} ({n_blocks} block(s) for fractions "
        f"{f.tolist()}; expected enough blocks that every split gets one, "
        "i.e. a smaller block size)",
    )
    params = {
        "block_km": b_km,
        "fractions": f.tolist(),
        "seed": seed,
        "crs": EQUAL_AREA_CRS,
        "grid_origin_m": [0.0, 0.0],
        "n_blocks": int(n_blocks),
    }
    return SplitResult(
        labels=labels,
        method="spatial_blocks",
        rule=SPATIAL_RULE,
        parameters=params,
        blocks=_blocks_table(blocks, size, draw, labels_b),
    )


def random_split(n: int, fractions=DEFAULT_FRACTIONS, seed: int = DEFAULT_SEED) -> SplitResult:
    """Random split of ``n`` samples by count (for tables without geography)."""
    f = check_fractions(fractions)
    perm = np.random.default_rng(int(seed)).permutation(n)
    n_train = int(round(f[0] * n))
    n_val = int(round(f[1] * n))
    labels = np.full(n, 2, dtype=np.int8)
    labels[perm[:n_train]] = 0
    labels[perm[n_train : n_train + n_val]] = 1
    _empty_check(labels, f"split.fractions = {f.tolist()} with {n} samples")
    return SplitResult(
        labels=labels,
        method="random",
        rule=RANDOM_RULE,
        parameters={"fractions": f.tolist(), "seed": int(seed)},
    )


def split_codes(values, what: str) -> np.ndarray:
    """The codes (int8: 0 train, 1 val, 2 test) of split labels ``values`` (train, val,
    test or their aliases, any case); InputError naming ``what`` and the unknown labels."""
    v = pd.Series(values).astype(str).str.strip().str.lower()
    codes = v.map(SPLIT_ALIASES)
    bad = sorted(set(pd.Series(values)[codes.isna().to_numpy()].astype(str)))
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise InputError(
            f"{what} holds {shown}: expected train, val or test (also training/validation/testing)"
        )
    return codes.to_numpy(dtype=np.int8)


def column_split(values, column: str, source: str = "table") -> SplitResult:
    """Split given per sample by ``values`` (train/val/test, or aliases)."""
    what = f"{source}: split column {column!r} (dataset.split_column)"
    labels = split_codes(values, what)
    _empty_check(labels, what)
    return SplitResult(
        labels=labels, method="column", rule=COLUMN_RULE, parameters={"column": column}
    )


def array_split(codes: np.ndarray, source: str) -> SplitResult:
    """Split given per sample by ``codes`` (0 train, 1 val, 2 test), the ``split`` array
    of the arrays file ``source`` (:mod:`.arrays` checked its values)."""
    labels = np.asarray(codes, dtype=np.int8)
    _empty_check(labels, f"arrays {source!r}: its split array")
    return SplitResult(
        labels=labels, method="array", rule=ARRAY_RULE, parameters={"array": "split"}
    )


def split_summary(split: SplitResult, area_km2: np.ndarray | None = None) -> dict:
    """Counts (and areas) per split, the rule and its parameters, as a JSON-ready dict."""
    n = split.labels.size
    counts = np.bincount(split.labels, minlength=3)
    out = {
        "method": split.method,
        "rule": split.rule,
        "parameters": split.parameters,
        "n_samples": int(n),
        "splits": {},
    }
    if area_km2 is not None:
        areas = np.bincount(split.labels, weights=area_km2, minlength=3)
        out["area_km2"] = float(areas.sum())
    for i, name in enumerate(SPLITS):
        entry = {"samples": int(counts[i]), "sample_fraction": float(counts[i] / n)}
        if area_km2 is not None:
            entry["area_km2"] = float(areas[i])
            entry["area_fraction"] = float(areas[i] / areas.sum())
        if split.blocks is not None:
            entry["blocks"] = int((split.blocks["split"] == name).sum())
        out["splits"][name] = entry
    return out
