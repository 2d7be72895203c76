"""Compute devices, resolved in one place for nnU-Net (training, prediction) and the
uncertainty maps.

``"auto"`` is CUDA when torch sees it, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and
``"mps"`` (Apple GPUs, which nnU-Net supports) are checked to exist. The maps' kernels run on
the CPU (numpy) and on CUDA (torch, Triton); asked for ``mps`` they run on the CPU
(:func:`maps_device`, with :data:`MAPS_ON_CPU` to tell the user). torch is imported only
when a request needs it: on a machine without torch, ``"auto"`` and ``"cpu"`` give
:class:`TorchlessCpu`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clasp_rs._optional import import_torch, torch_or_none
from clasp_rs.exceptions import DeviceError, InvalidArgumentError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEVICE_CHOICES",
    "MAPS_ON_CPU",
    "TorchlessCpu",
    "maps_device",
    "resolve_device",
    "resolve_torch_device",
]

#: What to tell a user who asked for mps: where the maps run instead.
MAPS_ON_CPU = (
    "uncertainty maps run on the CPU: their kernels exist for cpu and cuda, not mps "
    "(nnU-Net still trains and predicts on mps)"
)

#: What the CLI offers for ``--device``; ``cuda:N`` is left to the library and to the Ray
#: executor, which places each task on its own GPU.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

_EXPECTED = "expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


@dataclass(frozen=True)
class TorchlessCpu:
    """The CPU when torch is not installed: the numpy kernels need nothing else, so CPU users
    do not have to install torch (several GB) to compute maps."""

    type: str = "cpu"

    def __str__(self) -> str:
        return "cpu"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device | TorchlessCpu:
    """Turn a device request into a ``torch.device``.

    Args:
        device: ``"auto"`` or None (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``, ``"mps"``, or a ``torch.device``.

    Returns:
        The device; :class:`TorchlessCpu` for ``"auto"``/``"cpu"`` when torch is not
        installed.

    Raises:
        ImportError: another device was requested and torch is not installed (names the
            extra).
        DeviceError: CUDA or MPS was requested but torch sees no (such) device.
        ValueError: the request is not a device name, or not one clasp-rs runs on.
    """
    if device is None:
        device = "auto"
    if isinstance(device, str) and device in ("auto", "cpu") and torch_or_none() is None:
        return TorchlessCpu()
    torch = import_torch()
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InvalidArgumentError(f"unknown device {device!r}: {_EXPECTED}") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {str(device)!r} requested but torch sees no CUDA device (torch "
                f"{torch.__version__}, CUDA build {torch.version.cuda}); use device='cpu' or "
                "'auto'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {str(device)!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible"
            )
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(
                f"device {str(device)!r} requested but torch sees no MPS device (Apple GPU); "
                "use device='cpu' or 'auto'"
            )
    elif resolved.type != "cpu":
        raise InvalidArgumentError(f"unsupported device {str(device)!r}: {_EXPECTED}")
    return resolved


def resolve_torch_device(device: str | torch.device | None = "auto") -> torch.device:
    """:func:`resolve_device` for code that runs torch itself (nnU-Net): always a
    ``torch.device``.

    Raises:
        ImportError: torch is not installed (names the extra).
        DeviceError, ValueError: as :func:`resolve_device`.
    """
    resolved = resolve_device(device)
    if isinstance(resolved, TorchlessCpu):
        return import_torch().device("cpu")
    return resolved


def maps_device(device: str | torch.device | None = "auto") -> Any:
    """Where the uncertainty maps of a ``device`` request run: that device for cpu and cuda,
    the CPU for mps (see :data:`MAPS_ON_CPU`).

    Returns:
        A ``torch.device`` or :class:`TorchlessCpu`.
    """
    resolved = resolve_device(device)
    if resolved.type == "mps":
        return import_torch().device("cpu")
    return resolved
