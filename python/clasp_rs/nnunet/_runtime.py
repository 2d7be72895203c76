"""What every nnU-Net call needs: the lazy import, the environment, and the one filter for
nU-Net's own warnings. Devices are resolved by :mod:`clasp_rs.devices`."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping

from clasp_rs._optional import import_nnunetv2
from clasp_rs.exceptions import DatasetError
from clasp_rs.nnunet.paths import NnUNetPaths, nnunet_paths


def nnunet_ready() -> NnUNetPaths:
    """Import nnunetv2 and check that it sees the folders our environment names.

    nnunetv2 >= 2.6 reads ``nnUNet_raw`` & co. whenever it uses them; older releases read them
    once, when ``nnunetv2.paths`` is first imported, so a variable changed later would send
    our files and nnU-Net's to different places.

    Raises:
        ImportError: nnunetv2 is missing (install clasp-rs[nnunet]).
        DatasetError: a variable is unset, or nnunetv2 holds different folders.
    """
    paths = nnunet_paths()
    import_nnunetv2()
    import nnunetv2.paths as nn_paths

    for name, ours in zip(
        ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"),
        (paths.raw, paths.preprocessed, paths.results),
        strict=True,
    ):
        theirs = getattr(nn_paths, name)
        if theirs is None or os.path.abspath(os.fspath(theirs)) != os.path.abspath(ours):
            raise DatasetError(
                f"nnunetv2 uses {name}={theirs!r} but the environment now says {str(ours)!r}: "
                f"this nnunetv2 read the variable when it was first imported; set the nnU-Net "
                f"variables before starting Python, or upgrade to nnunetv2 >= 2.6"
            )
    return paths


@contextlib.contextmanager
def scoped_environ(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the duration of the block."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: Mapping[str, str | None]) -> None:
    """Set each variable to its value; None removes it (restores a variable that was unset)."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# Packages whose warnings inside nnU-Net calls are nnU-Net's business: e.g. its trainer
# divides 0/0 for a class absent from a validation batch (numpy RuntimeWarning raised in
# nnunetv2), and scanning its trainer modules imports timm (FutureWarning raised in torch).
NNUNET_WARNING_MODULES = (
    "nnunetv2",
    "torch",
    "numpy",
    "batchgenerators",
    "batchgeneratorsv2",
    "dynamic_network_architectures",
    "acvl_utils",
    "blosc2",
    "timm",
)


@contextlib.contextmanager
def nnunet_warnings() -> Iterator[None]:
    """Show warnings attributed to nnU-Net and its libraries once instead of raising them,
    whatever the caller's filters (``-W error``, pytest's ``filterwarnings = error``);
    warnings from other modules keep the caller's filters."""
    with warnings.catch_warnings():
        for module in NNUNET_WARNING_MODULES:
            warnings.filterwarnings("default", module=rf"{module}(\.|$)")
        yield
