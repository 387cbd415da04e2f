#!/usr/bin/env bash
# The analysis once the warming scan and the autoencoder baseline are done (README.md here,
# "When every point is done"): both runs whole, the selection grid, the loss spikes of the
# training logs, and the hysteresis against the cooling chain's points at T >= 0.01. Writes
# RUN_DIR/final.out, selection_grid.txt and spikes.txt. Usage: runs-in-progress/finish.sh [RUN_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
run=${1:-/work/runs/wcmlp}
. "$repo/.venv/bin/activate"
cd "$run"
sm=(snakemake -s "$repo/Snakefile" -d . --configfile "$repo/config/config.yaml" local.yaml)
finished() { ls -d results/"$1"/scan/T=*/seed=*.finished 2>/dev/null | wc -l; }
if [ "$(finished worldclim_mlp)" -lt 111 ]; then
    echo "finish.sh: $(finished worldclim_mlp) of 111 warming points finished: resume first" >&2
    exit 1
fi
if pgrep -f "collapse-spectroscopy autoencoder" > /dev/null; then
    echo "finish.sh: the autoencoder baseline is still training" >&2
    exit 1
fi
# both runs whole: spectra, summary.json (with training_cost), Figs 1-5, the rate-distortion
# figure, maps and loadings, the autoencoder baseline (Fig 5 needs the null run)
"${sm[@]}" --cores 2 --config default_runs='[worldclim,worldclim_mlp]' > final.out 2>&1
tail -n 30 final.out
# n(eps) under both pruning rules and both selections, the AE baseline, the null run, R(D)
python "$repo/scripts/selection_grid.py" results/worldclim_mlp --null results/worldclim \
    | tee selection_grid.txt
# every validation window with a batch loss over 100 times the best validation loss before
# it: a loss spike (docs/science.md §7b). Windows logged before train_loss_max existed show
# only through their mean batch loss, which a spike under ~1e5 times leaves under that line.
python - <<'EOF' | tee spikes.txt
import glob
import pandas as pd

for f in sorted(glob.glob("results/worldclim_mlp*/scan/T=*/seed=*.log.csv")):
    log = pd.read_csv(f)
    loss = log["train_loss_max"].fillna(log["train_loss"]) if "train_loss_max" in log else log["train_loss"]
    spikes = log[loss > 100 * log["val_loss"].cummin().shift(1)]
    if len(spikes):
        best = int(log["update"][log["val_loss"].idxmin()])
        print(f, "spike windows ending at", list(spikes["update"]), "best at", best)
EOF
# the cooling chain (seed 0), stopped below T = 0.01 where loss spikes kept its points from
# equilibrating (docs/science.md §7b): its 13 points from T = 1 to 0.01, gathered apart
# from the run's scan.nc (which names all 37), against the warming scan (3 seeds: Dn*_k and
# n(eps) over both directions) and against seed 0 alone (the hysteresis figure)
mkdir -p results/hysteresis
cooling=()
for f in results/worldclim_mlp_cooling/scan/T=*/seed=0.nc; do
    t=${f#*T=}; t=${t%%/*}
    if python -c "import sys; sys.exit(0 if float('$t') >= 0.01 else 1)"; then cooling+=("$f"); fi
done
collapse-spectroscopy gather --out results/hysteresis/cooling.nc "${cooling[@]}"
python -c "import xarray as xr; \
xr.open_dataset('results/worldclim_mlp/scan.nc').sel(seed=[0]).to_netcdf('results/hysteresis/warm0.nc')"
for warm in results/worldclim_mlp/scan.nc results/hysteresis/warm0.nc; do
    name=$(basename "$warm" .nc)
    collapse-spectroscopy spectra "$warm" --cooling-scan results/hysteresis/cooling.nc \
        --run-config results/worldclim_mlp/config/spectra.json \
        --prepared results/worldclim_mlp/data/prepared.npz \
        --out "results/hysteresis/spectra_$name.csv" \
        --summary "results/hysteresis/summary_$name.json"
done
collapse-spectroscopy hysteresis results/hysteresis/warm0.nc results/hysteresis/cooling.nc \
    results/hysteresis/spectra_warm0.csv --out-dir results/hysteresis
python -c "import json; b = json.load(open('results/hysteresis/summary_scan.json')); \
print(json.dumps(b['hysteresis'], indent=1))"
