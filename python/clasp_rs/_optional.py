"""Lazy imports of the heavy optional dependencies (torch, nnU-Net v2, SimpleITK).

``import clasp_rs`` must stay cheap and work without them, so modules that need one call these
helpers at the point of use; a missing package raises an ImportError that names the extra to
install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "import_monailabel",
    "import_nnunetv2",
    "import_report_dependency",
    "import_simpleitk",
    "import_torch",
    "torch_or_none",
]


def _import_or_explain(module: str, extra: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the optional dependency '{module}', which is not installed: "
            f"install clasp-rs[{extra}] (pip install 'clasp-rs[{extra}]')"
        ) from err


def import_monailabel() -> ModuleType:
    """Return the ``monailabel`` module.

    Raises:
        ImportError: MONAI Label is not installed; the message says to install
            ``clasp-rs[monailabel]``.
    """
    return _import_or_explain("monailabel", "monailabel", "the MONAI Label adapter")


def import_torch(purpose: str = "computing uncertainty maps") -> ModuleType:
    """Return the ``torch`` module (``purpose`` says what needs it, in the error).

    Raises:
        ImportError: torch is not installed; the message says to install ``clasp-rs[torch]``.
    """
    return _import_or_explain("torch", "torch", purpose)


def torch_or_none() -> ModuleType | None:
    """Return the ``torch`` module, or None when it is not installed (for code paths that
    have a torch-free fallback, such as the CPU uncertainty maps)."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def import_nnunetv2() -> ModuleType:
    """Return the ``nnunetv2`` module.

    Raises:
        ImportError: nnU-Net v2 is not installed; the message says to install
            ``clasp-rs[nnunet]``.
    """
    return _import_or_explain("nnunetv2", "nnunet", "running the nnU-Net loop")


def import_report_dependency(module: str) -> ModuleType:
    """Return ``matplotlib`` or ``scipy`` (reports: figures, FG-Eff fits, t-tests).

    Raises:
        ImportError: the module is not installed; the message says to install
            ``clasp-rs[report]``.
    """
    return _import_or_explain(module, "report", "reports and learning-curve statistics")


def import_simpleitk() -> ModuleType:
    """Return the ``SimpleITK`` module (an nnunetv2 dependency), which reads and writes
    images and label files.

    Raises:
        ImportError: SimpleITK is not installed; the message says to install
            ``clasp-rs[nnunet]``.
    """
    return _import_or_explain("SimpleITK", "nnunet", "reading and writing images and labels")
