"""patches_mask, partial_labels and Patch.crop against a per-voxel reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clasp_rs import InvalidPatchError, Patch, partial_labels, patches_mask

SHAPE = (5, 7, 6)


@st.composite
def patch_lists(draw):
    out = []
    for _ in range(draw(st.integers(0, 5))):
        size = tuple(draw(st.integers(1, 4)) for _ in range(3))
        coords = tuple(draw(st.integers(0, n - s)) for n, s in zip(SHAPE, size, strict=True))
        out.append(Patch(draw(st.sampled_from(["a", "a.nii.gz", "b.npy"])), coords, size))
    return out


def _inside(p: Patch, v: tuple[int, ...]) -> bool:
    return all(c <= x < c + s for c, s, x in zip(p.coords, p.size, v, strict=True))


@settings(max_examples=60, deadline=None)
@given(patch_lists(), st.sampled_from([None, "a", "a.npy", "b", "c"]))
def test_mask_and_partial_labels_match_a_per_voxel_reference(patches, case) -> None:
    kept = [p for p in patches if case is None or p.file.split(".")[0] == case.split(".")[0]]
    labels = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    mask = patches_mask(SHAPE, patches, case)
    partial = partial_labels(labels, patches, -1, case=case)
    on_channels = partial_labels(
        torch.from_numpy(np.stack([labels, labels])), patches, 99, case=case
    )
    for v in np.ndindex(SHAPE):
        hit = any(_inside(p, v) for p in kept)
        assert mask[v] == hit
        assert partial[v] == (labels[v] if hit else -1)
        assert on_channels[(0, *v)] == on_channels[(1, *v)] == (labels[v] if hit else 99)
    assert partial.dtype == labels.dtype and isinstance(on_channels, torch.Tensor)
    for p in kept:
        assert np.array_equal(p.crop(labels), labels[p.slices])


def test_partial_labels_copy_and_keep_the_input() -> None:
    labels = torch.ones((4, 4, 4), dtype=torch.uint8)
    out = partial_labels(labels, [Patch("c", (0, 0, 0), (2, 2, 2))], 255)
    assert int(out.sum()) == 8 + 255 * 56 and int(labels.sum()) == 64


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: patches_mask((4, 4, 4), [Patch("c", (2, 0, 0), (3, 2, 2))]), "on axis 0"),
        (lambda: patches_mask((4, 4), []), "3 non-negative integers"),
        (lambda: patches_mask((4, 4, 4), [(0, 0, 0, 1, 1, 1)]), "clasp_rs.Patch"),
        (lambda: partial_labels(np.zeros((4, 4)), [], 0), "at least 3 axes"),
        (lambda: Patch("c", (0, 0, 1), (1, 1, 4)).crop(np.zeros((2, 4, 4, 4))), "on axis 2"),
        (lambda: Patch("c", (0, 0, 0), (1, 1, 1)).crop(np.zeros((4, 4))), "at least 3 axes"),
    ],
)
def test_bad_input_is_one_clear_error(call, words: str) -> None:
    with pytest.raises(InvalidPatchError, match=words):
        call()


def test_a_patch_of_another_case_may_lie_outside_the_volume() -> None:
    other = Patch("b", (10, 10, 10), (4, 4, 4))
    assert patches_mask((4, 4, 4), [other], case="a").sum() == 0
