"""What the workflow tests share: the repository's Snakefile, a tiny synthetic run, and a
working directory that holds its own config/config.yaml (so tests never write into the
repository)."""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def tiny_config(temperatures, max_updates=600, **training):
    """A one-seed synthetic run named ``tiny`` with 6 latents."""
    return {
        "default_runs": ["tiny"],
        "runs": {
            "tiny": {
                "dataset": {"source": "synthetic"},
                "model": {"latents": 6},
                "training": {
                    "max_updates": max_updates,
                    "eval_every": 100,
                    "patience": 0.5,
                    **training,
                },
                "scan": {"temperatures": temperatures, "seeds": [0]},
            }
        },
    }


def workdir(path, config):
    """``path`` with ``config`` as its config/config.yaml."""
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return path
