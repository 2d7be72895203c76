"""Write the bundled example score volumes, examples/scores/case_00N.npy.

Each is a smooth synthetic uncertainty map: float32 (Z, Y, X) = (48, 64, 64), C-order,
values in [0, 1), a low background plus a few Gaussian blobs at seeded random places, like
the entropy map of a model unsure about a few structures. Deterministic: rerunning gives
the same files.

Usage: python examples/make_example_scores.py [OUT_DIR]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

SHAPE = (48, 64, 64)
CASES = ("case_001", "case_002")
BLOBS_PER_CASE = 5


def example_volume(seed: int) -> np.ndarray:
    """float32 (Z, Y, X): background 0.02 plus Gaussian blobs, clipped below 1."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in SHAPE), indexing="ij")
    volume = np.full(SHAPE, 0.02)
    for _ in range(BLOBS_PER_CASE):
        centre = rng.uniform(0, SHAPE)
        sigma = rng.uniform(3.0, 8.0)
        height = rng.uniform(0.3, 0.9)
        distance2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
        volume += height * np.exp(-distance2 / (2 * sigma**2))
    return np.minimum(volume, 0.999).astype(np.float32)


def save_atomically(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(out_dir: str | os.PathLike[str] = Path(__file__).parent / "scores") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for seed, case in enumerate(CASES, start=1):
        path = out / f"{case}.npy"
        save_atomically(path, example_volume(seed))
        print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
