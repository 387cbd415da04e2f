"""Write scikit-learn's bundled handwritten digits as an arrays source (no download).

    python examples/digits/make_digits.py            # -> resources/digits/digits.npz

1,797 images of 8 x 8 pixels (grey levels 0-16), the UCI optical-recognition digits that
ship inside scikit-learn (``pip install scikit-learn``, or the project's ``examples``
extra). The file holds ``x`` (1797, 8, 8) float32 and nothing else: the run flattens each
image to 64 features, records ``sample_shape`` (8, 8) for the model factory and the
loadings images, and splits the images at random (``split.fractions``, ``split.seed``).
The labels are not written: the scan never sees them.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("resources/digits/digits.npz"))
    args = p.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("make_digits: needs scikit-learn: pip install scikit-learn", file=sys.stderr)
        return 2
    images = load_digits().images.astype(np.float32)  # (1797, 8, 8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".tmp-{args.out.name}")
    with open(tmp, "wb") as fh:  # np.savez adds .npz to a name without it: a file object
        np.savez(fh, x=images)
    os.replace(tmp, args.out)  # never a half-written file under the final name
    print(f"wrote {args.out}: {images.shape[0]} images of {images.shape[1]} x {images.shape[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
