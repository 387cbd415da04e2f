#!/usr/bin/env bash
# Stop the scan at the end of a session and pack it into worldclim_mlp.tar.gz (README.md
# here): each training job checkpoints on SIGTERM (or finishes measuring its point) and
# exits 4; the workflows then end. Usage: runs-in-progress/pack.sh [RUN_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
run=${1:-/work/runs/wcmlp}
pkill -TERM -f "collapse-spectroscopy (train|autoencoder)" || true
while pgrep -f "snakemake .*-d \. " > /dev/null; do sleep 5; done
cd "$run"
tar -czf "$repo/runs-in-progress/worldclim_mlp.tar.gz" \
    --exclude=results/worldclim_mlp/data --exclude=results/worldclim_mlp_cooling/data \
    local.yaml local_cool.yaml results/worldclim_mlp results/worldclim_mlp_cooling
for r in worldclim_mlp worldclim_mlp_cooling; do
    echo "$r: $(ls -d results/$r/scan/T=*/seed=*.finished | wc -l) points finished"
done
ls -l "$repo/runs-in-progress/worldclim_mlp.tar.gz"
