"""clasp_rs.arrays: tensors to engine arrays without copies, low-precision probabilities,
layout messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clasp_rs
from clasp_rs.arrays import layout_hint, probabilities_for_maps, score_array
from generators import smooth_probabilities


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_cpu_float_tensors_are_shared_not_copied(dtype) -> None:
    base = torch.rand(6, 8, 10, dtype=dtype)
    for tensor in (base, base.permute(2, 1, 0), base[:, ::2], base.requires_grad_(False)):
        array = score_array(tensor)
        assert isinstance(array, np.ndarray)
        assert array.__array_interface__["data"][0] == tensor.data_ptr()
        assert np.array_equal(array, tensor.numpy())


def test_bfloat16_is_upcast_exactly_and_numpy_passes_through() -> None:
    tensor = torch.rand(4, 5, 6).to(torch.bfloat16)
    array = score_array(tensor)
    assert array.dtype == np.float32 and np.array_equal(array, tensor.float().numpy())
    plain = np.zeros((2, 2, 2), np.float32)
    assert score_array(plain) is plain and score_array("x.npy") == "x.npy"


def test_score_volumes_with_a_channel_axis_are_explained() -> None:
    with pytest.raises(clasp_rs.InvalidScoresError, match=r"axis 0 has 1 entry.*scores\[0\]"):
        clasp_rs.select_top_patches(torch.rand(1, 4, 4, 4), (2, 2, 2), 1)
    with pytest.raises(clasp_rs.InvalidScoresError, match=r"batch \(B, 1, Z, Y, X\) of 3"):
        clasp_rs.select_top_patches(np.ones((3, 1, 4, 4, 4)), (2, 2, 2), 1)
    with pytest.raises(clasp_rs.InvalidScoresError, match="got Tensor|integer|dtype"):
        clasp_rs.select_top_patches(torch.ones(4, 4, 4, dtype=torch.int32), (2, 2, 2), 1)


def test_layout_hint_names_the_axis_only_when_another_axis_sums_to_one() -> None:
    probs = smooth_probabilities(np.random.default_rng(0), (5, 6, 7), 3)
    assert layout_hint(probs) == ""
    assert layout_hint(np.stack([probs, probs])) == ""
    last = np.moveaxis(probs, 0, -1)
    assert layout_hint(last).startswith("axis 0 has 5 entries, expected C (classes) first")
    assert "in (B, C, Z, Y, X)" in layout_hint(torch.from_numpy(last), offset=1)
    assert "np.moveaxis(p, 4, 1)" in layout_hint(torch.from_numpy(last), offset=1)
    assert layout_hint(np.full((3, 5, 6, 7), 0.5)) == ""  # wrong, but not a layout problem


def test_low_precision_probabilities_are_renormalised_float32() -> None:
    probs = smooth_probabilities(np.random.default_rng(1), (5, 6, 7), 3)
    for value in (probs.astype(np.float16), torch.from_numpy(probs).to(torch.bfloat16)):
        out = probabilities_for_maps(value, "v", logits=False)
        out = out.numpy() if isinstance(out, torch.Tensor) else out
        assert out.dtype == np.float32
        assert np.abs(out.sum(0) - 1).max() < 1e-6
        upcast = np.asarray(value.float() if isinstance(value, torch.Tensor) else value, np.float32)
        np.testing.assert_allclose(out, upcast / upcast.sum(0), rtol=1e-6)
    assert probabilities_for_maps(probs, "v", logits=False) is probs
    half = probs.astype(np.float16)
    assert probabilities_for_maps(half, "v", logits=True) is half
    with pytest.raises(clasp_rs.InvalidProbabilitiesError, match="negative values"):
        probabilities_for_maps(-half, "v", logits=False)
    last = np.moveaxis(half, 0, -1)
    with pytest.raises(clasp_rs.InvalidProbabilitiesError, match="axis 0 has 5 entries"):
        probabilities_for_maps(last, "v", logits=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_copied_to_the_cpu_once() -> None:
    tensor = torch.rand(4, 5, 6, device="cuda")
    assert np.array_equal(score_array(tensor), tensor.cpu().numpy())
    assert (
        layout_hint(
            torch.from_numpy(
                np.moveaxis(smooth_probabilities(np.random.default_rng(2), (5, 6, 7), 3), 0, -1)
            ).cuda()
        )
        != ""
    )
