"""One device resolution for nnU-Net and the maps (clasp_rs.devices)."""

from __future__ import annotations

import pytest

from clasp_rs import ClaspError, DeviceError
from clasp_rs.devices import maps_device, resolve_device, resolve_torch_device

torch = pytest.importorskip("torch")


def test_device_errors_are_clasp_errors_and_runtime_errors():
    assert issubclass(DeviceError, ClaspError) and issubclass(DeviceError, RuntimeError)


def test_auto_cpu_and_none_agree_for_nnunet_and_maps():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None) == resolve_device("auto") == torch.device(expected)
    assert resolve_torch_device("cpu") == torch.device("cpu")
    assert maps_device("cpu") == torch.device("cpu")
    assert maps_device("auto") == resolve_device("auto")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the error without MPS")
def test_mps_without_an_apple_gpu_is_a_clear_error():
    for resolve in (resolve_device, resolve_torch_device, maps_device):
        with pytest.raises(DeviceError, match="torch sees no MPS device"):
            resolve("mps")


def test_unknown_and_unsupported_devices():
    with pytest.raises(ValueError, match="unknown device 'gpu0'.*'mps'"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        resolve_torch_device("meta")
