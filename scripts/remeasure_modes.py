"""Add the per-mode totals and ``pca_eval_ratio`` to a finished linear run's scan points,
from their saved weights, without retraining (docs/science.md §4.7, §10.1), and write the
gathered scan and the spectra table with the new columns to another folder.

    python scripts/remeasure_modes.py results/worldclim /tmp/worldclim_modes
    python scripts/rank_table.py /tmp/worldclim_modes

For a run whose points were trained before the per-mode totals existed; a new run has them.
Reads ``config/train.json`` (evaluation split) and ``config/spectra.json`` (``rho_min``) of
the run, its ``data/prepared.npz`` and every ``scan/T=*/seed=*.nc`` with its ``.pt``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from collapse_spectroscopy.analysis import modes, pca, spectra
from collapse_spectroscopy.maps import latent_maps
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.prepared import load_prepared


def main(run: Path, out: Path) -> int:
    train_cfg = json.loads((run / "config/train.json").read_text())
    rho_min = json.loads((run / "config/spectra.json").read_text())["spectra"]["rho_min"]
    if train_cfg["model"]["kind"] != "linear":
        print("remeasure_modes: only a linear run has per-mode totals", file=sys.stderr)
        return 2
    ds = load_prepared(run / "data/prepared.npz")
    x_eval = ds.split(train_cfg["training"]["eval_split"])
    basis = pca.pca_basis(ds.x_train)
    ratio = pca.pca_eval_ratio(ds.x_train, x_eval, basis)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for nc in sorted((run / "scan").glob("T=*/seed=*.nc")):
        point = scanfile.read(nc)
        params = latent_maps.load_model(nc.with_suffix(".pt"))[0].numpy_params()
        totals = modes.measure_modes(params, x_eval, ds.x_train, basis)
        point["pca_eval_ratio"] = ("mode", ratio)
        for name in scanfile.PER_MODE:
            point[name] = ("mode", getattr(totals, name.removeprefix("mode_")))
        ranked = totals.mode_of_latent[point["latent_index"].values] + 1
        point["latent_mode"] = ("latent", ranked.astype(np.int32))
        path = out / "points" / f"{nc.parent.name}_{nc.name}"
        path.parent.mkdir(exist_ok=True)
        scanfile.write(point, path, engine=scanfile.POINT_ENGINE)
        paths.append(path)
    scan = scanfile.gather(paths)
    scanfile.write(scan, out / "scan.nc")
    table, _ = spectra.summarize(scan, rho_min=rho_min)
    table.to_csv(out / "spectra.csv", index=False, float_format="%.10g")
    print(f"{len(paths)} scan points re-measured; wrote {out / 'scan.nc'} and spectra.csv")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
