"""The exceptions clasp-rs raises. Each also derives from the builtin a caller would expect.

The native engine raises these classes too (it imports this module when it maps an error),
so ``except clasp_rs.ClaspError`` catches everything clasp-rs reports on purpose.
"""

from __future__ import annotations

__all__ = [
    "ClaspError",
    "InvalidScoresError",
    "InvalidPatchError",
    "NpyFormatError",
    "InvalidProbabilitiesError",
    "LoopFileError",
    "DatasetError",
    "DeviceError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "ClaspWarning",
    "PatchSizeWarning",
    "ShortQueryWarning",
    "BudgetWarning",
]


class ClaspError(Exception):
    """Base class of every error clasp-rs raises on purpose."""


class InvalidScoresError(ClaspError, ValueError):
    """A score volume is unusable: wrong dimensionality or dtype, NaN/inf, negative values
    where power sampling needs non-negative ones, or maps of one volume with different shapes."""


class InvalidPatchError(ClaspError, ValueError):
    """A patch size, stride, count or annotated box is invalid."""


class NpyFormatError(ClaspError, ValueError):
    """A ``.npy`` file is corrupt, truncated, or of an unsupported dtype or byte order."""


class InvalidProbabilitiesError(ClaspError, ValueError):
    """Class probabilities are not a distribution (negative, NaN, sums far from 1) or do not
    agree between folds (cases, shapes)."""


class LoopFileError(ClaspError, ValueError):
    """A ``loop_NNN.json`` file is corrupt or names something that does not exist."""


class DatasetError(ClaspError, ValueError):
    """An nnU-Net dataset or experiment folder is incomplete or inconsistent."""


class DeviceError(ClaspError, RuntimeError):
    """A requested compute device exists in torch but not on this machine (no CUDA, no MPS,
    an index beyond the visible GPUs)."""


class InvalidArgumentError(ClaspError, ValueError):
    """An argument is outside its range or not one of the accepted values: a loop, seed,
    ``n_loops``, fraction or beta out of range, an unknown strategy or device, a bad case
    name."""


class InvalidTypeError(ClaspError, TypeError):
    """An argument is of a type clasp-rs does not take (probabilities given as a number, a
    dict where a sequence of folds goes, ...)."""


class ClaspWarning(UserWarning):
    """Base class of the warnings clasp-rs gives (the CLI prints them as one line each)."""


class PatchSizeWarning(ClaspWarning):
    """A patch size larger than some volume on an axis (it is clipped there)."""


class ShortQueryWarning(ClaspWarning):
    """A query returned fewer patches than asked for: no valid candidate was left (every one
    overlaps an annotated or an already taken patch). Functions that return a result object
    report the shortfall there (``unfilled``) instead."""


class BudgetWarning(ClaspWarning):
    """A budget takes so much of the pool that the active-learning loop has little left to
    choose (e.g. the starting budget alone annotates most of the foreground)."""
