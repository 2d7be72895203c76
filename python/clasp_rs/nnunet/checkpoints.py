"""Reading nnU-Net checkpoints safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_checkpoint"]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load an nnU-Net checkpoint without unpickling arbitrary objects.

    nnU-Net loads its checkpoints with ``weights_only=False``; besides tensors and plain
    containers they only hold numpy scalars (and their dtypes), which are allowed here
    explicitly, so ``weights_only=True`` reads them.
    """
    import numpy as np

    from clasp_rs._optional import import_torch

    torch = import_torch()
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtype_classes: set[type] = {
        type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64)
    }
    dtype_classes.add(type(np.dtype(np.bool_)))
    with torch.serialization.safe_globals([scalar, np.dtype, *dtype_classes]):
        return torch.load(path, map_location=torch.device("cpu"), weights_only=True)
