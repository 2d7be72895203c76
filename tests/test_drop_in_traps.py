"""Regression tests for the traps a PyTorch / MONAI team hit using clasp-rs as a drop-in
selector (issue 12, "Why"): each gave a wrong or unhelpful result without a word. Every test
here fails on the code before issue 12 (checked by running this file against it)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import clasp_rs
from clasp_rs import ClaspPE, Patch, case_id
from clasp_rs.nnunet.labels import patch_mask
from generators import smooth_probabilities

ROOT = Path(__file__).resolve().parent.parent


def _ensemble(seed: int, n: int = 3, shape=(12, 32, 32), c: int = 3, m: int = 2) -> np.ndarray:
    """float32 (n, M, C, Z, Y, X): n volumes of M members each."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [np.stack([smooth_probabilities(rng, shape, c) for _ in range(m)]) for _ in range(n)]
    )


def _overlapping(a: list[Patch], b: list[Patch]) -> int:
    return sum(1 for p in a for q in b if case_id(p.file) == case_id(q.file) and p.overlaps(q))


def test_annotated_keyed_by_file_name_is_applied_to_the_case() -> None:
    # Was: annotated={"case_000.nii.gz": ...} for volumes={"case_000": ...} was ignored, so
    # the query came back overlapping what was already annotated.
    probs = _ensemble(0, n=1)
    volumes = {"case_000": probs[0]}
    first = ClaspPE(seed=0).query(volumes, 4, 0, (4, 8, 8), device="cpu")
    annotated = {"case_000.nii.gz": [Patch("case_000.nii.gz", p.coords, p.size) for p in first]}
    again = ClaspPE(seed=0).query(volumes, 4, 0, (4, 8, 8), annotated=annotated, device="cpu")
    assert len(again) == 4
    assert _overlapping(again, first) == 0


def test_an_annotated_key_naming_no_volume_is_an_error() -> None:
    # Was: a typo in a key was ignored.
    volumes = {"case_000": _ensemble(1, n=1)[0]}
    typo = {"case_00O": [Patch("case_00O", (0, 0, 0), (2, 2, 2))]}
    with pytest.raises(clasp_rs.InvalidPatchError, match="'case_00O' names no volume"):
        ClaspPE().query(volumes, 2, 0, (2, 4, 4), annotated=typo, device="cpu")
    with pytest.raises(clasp_rs.InvalidPatchError, match="'case_00O' names no volume"):
        clasp_rs.select_across_volumes(
            {"case_000": volumes["case_000"][0, 1]}, (2, 2, 2), 2, annotated=typo
        )


def test_annotated_takes_the_same_forms_everywhere() -> None:
    # Was: a dict in two functions and a list in the third (ClaspPE.query refused a list).
    probs = _ensemble(2, n=2)
    volumes = {"a": probs[0], "b": probs[1]}
    first = ClaspPE(seed=1).query(volumes, 6, 0, (4, 8, 8), device="cpu")
    as_list = ClaspPE(seed=1).query(volumes, 6, 0, (4, 8, 8), annotated=first, device="cpu")
    by_case: dict[str, list[Patch]] = {}
    for p in first:
        by_case.setdefault(p.file, []).append(p)
    as_dict = ClaspPE(seed=1).query(volumes, 6, 0, (4, 8, 8), annotated=by_case, device="cpu")
    assert clasp_rs.identical_patches(as_list, as_dict)
    assert _overlapping(as_list, first) == 0

    scores = {"a": probs[0, 0, 1], "b": probs[1, 0, 1]}
    top = clasp_rs.select_across_volumes(scores, (4, 8, 8), 5)
    listed = clasp_rs.select_across_volumes(scores, (4, 8, 8), 5, annotated=top)
    assert _overlapping(listed, top) == 0
    keyed = clasp_rs.select_top_patches(
        scores["a"], (4, 8, 8), 3, file="a", annotated={"a.npy": [p for p in top if p.file == "a"]}
    )
    assert _overlapping(keyed, top) == 0


def test_a_batch_tensor_is_read_as_b_volumes() -> None:
    # Was: a MONAI batch (B, C, Z, Y, X) under one key was read as B ensemble members of one
    # volume; query_patches takes the batch itself, one volume per entry.
    batch = torch.from_numpy(_ensemble(3, n=4, m=1)[:, 0])  # (B, C, Z, Y, X)
    names = [f"case_{i}" for i in range(4)]
    result = clasp_rs.query_patches(batch, 8, (4, 8, 8), names=names, device="cpu")
    per_volume = {name: batch[i].numpy() for i, name in enumerate(names)}
    expected = ClaspPE().query(per_volume, 8, 0, (4, 8, 8), device="cpu")
    assert sorted(result.patches, key=lambda p: (p.file, p.coords)) == sorted(
        expected, key=lambda p: (p.file, p.coords)
    )
    assert len({p.file for p in result}) > 1
    assert all(names[p.index] == p.file for p in result)


def test_patch_mask_of_a_case_marks_only_that_case() -> None:
    # Was: patch_mask(shape, patches, case=...) marked every case's patches.
    shape = (8, 16, 16)
    mine = [Patch("case_a.nii.gz", (0, 0, 0), (2, 4, 4))]
    others = [Patch("case_b.nii.gz", (4, 8, 8), (4, 8, 8)), Patch("case_c", (2, 2, 2), (2, 2, 2))]
    mask = patch_mask(shape, mine + others, "case_a")
    assert mask.sum() == 2 * 4 * 4
    assert np.array_equal(mask, clasp_rs.patches_mask(shape, mine + others, case="case_a.npy"))


def test_a_short_query_says_so() -> None:
    # Was: query(..., n=1000) returned a few patches and no word of the shortfall.
    volumes = {"x": _ensemble(4, n=1, shape=(8, 16, 16))[0]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patches = ClaspPE().query(volumes, 1000, 0, (4, 8, 8), device="cpu")
    assert len(patches) < 1000
    messages = [str(w.message) for w in caught if w.category.__name__ == "ShortQueryWarning"]
    assert messages == [
        f"clasp-pe returned {len(patches)} of the 1000 patches asked for: no valid candidate is "
        f"left for the other {1000 - len(patches)} (every candidate overlaps an annotated or a "
        "taken patch)"
    ]
    result = clasp_rs.query_patches(volumes, 1000, (4, 8, 8), device="cpu")
    assert result.unfilled == 1000 - len(result) == 1000 - len(patches)


def test_select_top_patches_takes_torch_tensors() -> None:
    # Was: select_top_patches refused tensors while ClaspPE.query took them.
    scores = _ensemble(5, n=1, m=1)[0, 0, 1]
    tensor = torch.from_numpy(scores).requires_grad_(True)
    got = clasp_rs.select_top_patches(tensor, (2, 4, 4), 5, stride=2)
    want = clasp_rs.select_top_patches(scores, (2, 4, 4), 5, stride=2)
    assert clasp_rs.identical_patches(got, want)
    both = clasp_rs.select_across_volumes(
        {
            "a": tensor.to(torch.bfloat16),
            "b": tensor.permute(2, 1, 0).contiguous().permute(2, 1, 0),
        },
        (2, 4, 4),
        5,
    )
    assert len(both) == 5


def test_bfloat16_probabilities_pass_the_channel_sum_check() -> None:
    # Was: bfloat16 failed the channel-sum check (its rounding exceeds 1e-3).
    probs = torch.from_numpy(_ensemble(6, n=1)[0]).to(torch.bfloat16)
    assert float((probs.float().sum(1) - 1).abs().max()) > 1e-3  # the reason it failed
    got = ClaspPE(seed=2).query({"x": probs}, 6, 0, (4, 8, 8), device="cpu")
    upcast = probs.float()
    renormalised = upcast / upcast.sum(1, keepdim=True)
    want = ClaspPE(seed=2).query({"x": renormalised.numpy()}, 6, 0, (4, 8, 8), device="cpu")
    assert clasp_rs.identical_patches(got, want)


def test_logits_can_be_passed_where_the_message_says() -> None:
    # Was: the error said "pass logits=True", a parameter query() did not have.
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(2, 3, 8, 32, 32)).astype(np.float32)
    with pytest.raises(clasp_rs.InvalidProbabilitiesError, match="pass logits=True"):
        ClaspPE().query({"x": logits}, 4, 0, (4, 8, 8), device="cpu")
    got = ClaspPE().query({"x": logits}, 4, 0, (4, 8, 8), logits=True, device="cpu")
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    want = ClaspPE().query({"x": probs}, 4, 0, (4, 8, 8), device="cpu")
    assert [(p.coords, p.stratum) for p in got] == [(p.coords, p.stratum) for p in want]
    assert np.allclose([p.mean for p in got], [p.mean for p in want], rtol=1e-5)


def test_a_channels_last_array_is_named_by_its_axis() -> None:
    # Was: a message about channel sums instead of which axis looks wrong.
    probs = smooth_probabilities(np.random.default_rng(8), (48, 20, 24), 3)  # (C, Z, Y, X)
    channels_last = np.moveaxis(probs, 0, -1)  # (Z, Y, X, C) = (48, 20, 24, 3)
    with pytest.raises(
        clasp_rs.InvalidProbabilitiesError, match=r"axis 0 has 48 entries, expected C"
    ) as info:
        ClaspPE().query({"x": channels_last}, 4, 0, (4, 8, 8), device="cpu")
    assert "axis 3" in str(info.value)
    batch = torch.from_numpy(channels_last[None])  # (B, Z, Y, X, C)
    with pytest.raises(
        clasp_rs.InvalidProbabilitiesError,
        match=re.escape("axis 1 has 48 entries, expected C (classes) first in (B, C, Z, Y, X)"),
    ):
        clasp_rs.query_patches(batch, 4, (4, 8, 8), device="cpu")


def test_equal_boxes_are_equal_patches_whatever_their_scores() -> None:
    # Was: Patch.__eq__ compared scores, so identical boxes from a float16 and a float32 run
    # compared unequal.
    rng = np.random.default_rng(9)
    scores = np.kron(rng.random((3, 3, 3)), np.ones((4, 4, 4))) + 1e-3 * rng.random((12, 12, 12))
    f32 = clasp_rs.select_top_patches(scores.astype(np.float32), (4, 4, 4), 5, stride=4)
    f16 = clasp_rs.select_top_patches(scores.astype(np.float16), (4, 4, 4), 5, stride=4)
    assert f16 == f32
    assert not clasp_rs.identical_patches(f16, f32)  # the scores do differ
    assert clasp_rs.identical_patches(f16, f32, rel_tol=1e-3)
    a = Patch("case_1.nii.gz", (1, 2, 3), (4, 4, 4), score=0.5, stratum=1)
    b = Patch("case_1", (1, 2, 3), (4, 4, 4), score=0.25)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Patch("case_2", (1, 2, 3), (4, 4, 4)) and a != Patch("case_1", (1, 2, 3), (4, 4, 5))


def test_box_mean_and_ranking_key_are_separate_attributes() -> None:
    # Was: Patch.score meant the box mean, the noised key or ln(box mean) depending on the
    # function. Patch.mean and Patch.key mean one thing everywhere; score stays as documented.
    rng = np.random.default_rng(10)
    scores = rng.random((6, 8, 8)).astype(np.float32)
    plain = clasp_rs.select_top_patches(scores, (2, 4, 4), 3)
    noised = clasp_rs.select_top_patches(scores, (2, 4, 4), 3, beta=2.0, seed=1)
    for p in [*plain, *noised]:
        z, y, x = p.coords
        assert p.mean == pytest.approx(float(scores[p.slices].astype(np.float64).mean()), rel=1e-12)
        assert scores[z : z + 2, y : y + 4, x : x + 4].shape == p.crop(scores).shape
    assert all(p.score == p.mean == p.key for p in plain)
    assert all(p.score == p.key != p.mean for p in noised)

    probs = _ensemble(11, n=1)[0]
    maps = clasp_rs.uncertainty.class_scores(probs, device="cpu")  # (C_fg + 1, Z, Y, X)
    for p in ClaspPE(noise=False).query({"x": probs}, 5, 0, (4, 8, 8), device="cpu"):
        channel = p.stratum - 1 if p.stratum > 0 else -1
        box = maps[channel][p.slices].astype(np.float64).mean()
        assert p.mean == pytest.approx(box, rel=1e-6)
        assert p.key == p.mean and p.score == pytest.approx(np.log(p.mean), rel=1e-12)


def test_patch_helpers_are_at_top_level() -> None:
    # Was: no Patch.slices, no crop or mask helper at top level, no Dataset.
    p = Patch("c", (1, 2, 3), (2, 3, 4))
    assert p.slices == (slice(1, 3), slice(2, 5), slice(3, 7))
    image = torch.arange(2 * 4 * 6 * 8).reshape(2, 4, 6, 8)
    assert torch.equal(p.crop(image), image[:, 1:3, 2:5, 3:7])
    labels = np.arange(4 * 6 * 8).reshape(4, 6, 8)
    partial = clasp_rs.partial_labels(labels, [p], ignore=-1)
    assert (partial[p.slices] == labels[p.slices]).all() and (
        partial == -1
    ).sum() == labels.size - 24
    assert clasp_rs.patches_mask((4, 6, 8), [p]).sum() == 24
    from clasp_rs.adapters.torch_dataset import PatchDataset

    assert len(PatchDataset([p], {"c": image})) == 1


def test_the_readme_shows_claspe() -> None:
    # Was: the README never showed ClaspPE. (test_readme.py runs its Python blocks.)
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)\n```", readme, re.S)
    assert any("clasp_rs.ClaspPE(" in b for b in blocks)
    assert any("clasp_rs.query_patches(" in b for b in blocks)
