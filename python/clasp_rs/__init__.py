"""clasp-rs: fast ClaSP PE active learning for 3D biomedical segmentation.

The selection engine is Rust (``clasp_rs._clasp_rs``); this package re-exports its public
Python API. ``import clasp_rs`` imports neither torch nor nnunetv2: the strategies, the
uncertainty maps and the nnU-Net loop load them when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from clasp_rs._engine import __version__
from clasp_rs.drop_in import PatchQuery, QueriedPatch, query_patches
from clasp_rs.exceptions import (
    ClaspError,
    DatasetError,
    DeviceError,
    InvalidArgumentError,
    InvalidPatchError,
    InvalidProbabilitiesError,
    InvalidScoresError,
    InvalidTypeError,
    LoopFileError,
    NpyFormatError,
    ShortQueryWarning,
)
from clasp_rs.masks import partial_labels, patches_mask
from clasp_rs.patches import (
    Patch,
    case_id,
    identical_patches,
    read_loop_file,
    read_loop_meta,
    write_loop_file,
)
from clasp_rs.selection import select_across_volumes, select_top_patches

__all__ = [
    "__version__",
    "ClaspPE",
    "get_strategy",
    "ClaspError",
    "DatasetError",
    "DeviceError",
    "InvalidArgumentError",
    "InvalidPatchError",
    "InvalidProbabilitiesError",
    "InvalidScoresError",
    "InvalidTypeError",
    "LoopFileError",
    "NpyFormatError",
    "ShortQueryWarning",
    "Patch",
    "PatchQuery",
    "QueriedPatch",
    "case_id",
    "identical_patches",
    "partial_labels",
    "patches_mask",
    "query_patches",
    "read_loop_file",
    "read_loop_meta",
    "select_across_volumes",
    "select_top_patches",
    "write_loop_file",
]

# Names resolved on first access, so that importing clasp_rs stays light. Strategy classes
# (ClaspPE, ...) go here, mapped to the module that defines them; add each to __all__ too
# once its module exists.
_LAZY_ATTRIBUTES: dict[str, str] = {
    "ClaspPE": "clasp_rs.strategies",
    "get_strategy": "clasp_rs.strategies",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY_ATTRIBUTES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'clasp_rs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES))
