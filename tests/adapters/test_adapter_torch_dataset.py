"""PatchDataset with torch's and MONAI's real DataLoader and dict transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clasp_rs
from clasp_rs import Patch
from clasp_rs.adapters.torch_dataset import PatchDataset
from generators import smooth_probabilities

monai = pytest.importorskip("monai", reason="needs clasp-rs[monai]")


def _pool(seed: int = 0, b: int = 3):
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.normal(size=(b, 2, 8, 20, 24)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 3, size=(b, 8, 20, 24)))
    probs = np.stack([smooth_probabilities(rng, (8, 20, 24), 3) for _ in range(b)])
    result = clasp_rs.query_patches(probs, 6, (4, 8, 8), names=["x", "y", "z"], device="cpu")
    return images, labels, result


def test_items_are_the_crops_of_their_volume() -> None:
    images, labels, result = _pool()
    data = PatchDataset(result, images, labels)
    assert len(data) == 6
    for p, item in zip(result, data, strict=True):
        assert torch.equal(item["image"], images[p.index][(..., *p.slices)])
        assert torch.equal(item["label"], labels[p.index][p.slices][None])
        assert item["roi_start"].tolist() == list(p.coords)
        assert item["roi_end"].tolist() == list(p.end)
        assert (item["name"], item["index"]) == (p.file, p.index)
        # Views of the inputs: no copy per item.
        assert item["image"].untyped_storage().data_ptr() == images.untyped_storage().data_ptr()
    by_name = PatchDataset(
        [Patch(p.file + ".nii.gz", p.coords, p.size) for p in result],
        {name: images[i].numpy() for i, name in enumerate(result.names)},
    )
    assert torch.equal(by_name[0]["image"], data[0]["image"]) and by_name[0]["index"] == -1


def test_monai_dict_transforms_and_dataloader_take_the_items() -> None:
    images, labels, result = _pool(1)
    flip = monai.transforms.Compose(
        [
            monai.transforms.RandFlipd(keys=["image", "label"], prob=1.0, spatial_axis=2),
            monai.transforms.ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
        ]
    )
    plain = PatchDataset(result, images, labels)
    loader = monai.data.DataLoader(
        PatchDataset(result, images, labels, transform=flip), batch_size=3, shuffle=False
    )
    batches = list(loader)
    assert [tuple(b["image"].shape) for b in batches] == [(3, 2, 4, 8, 8)] * 2
    first = batches[0]
    for i in range(3):
        crop = plain[i]["image"].flip(-1)
        scaled = (crop - crop.min()) / (crop.max() - crop.min())
        torch.testing.assert_close(first["image"][i].as_tensor(), scaled)
        assert torch.equal(first["label"][i].as_tensor(), plain[i]["label"].flip(-1))
    assert (
        first["roi_start"].shape == (3, 3) and list(first["name"]) == [p.file for p in result][:3]
    )


def test_whole_volumes_are_cropped_by_monai_spatial_crop() -> None:
    images, labels, result = _pool(2)
    whole = PatchDataset(result, images, labels, crop=False)
    cropped = PatchDataset(result, images, labels)
    for item, expected in zip(whole, cropped, strict=True):
        crop = monai.transforms.SpatialCropd(
            keys=["image", "label"], roi_start=item["roi_start"], roi_end=item["roi_end"]
        )(item)
        assert torch.equal(torch.as_tensor(crop["image"]), expected["image"])
        assert torch.equal(torch.as_tensor(crop["label"]), expected["label"])


def test_bad_inputs_fail_when_the_dataset_is_made() -> None:
    images, labels, result = _pool(3)
    with pytest.raises(clasp_rs.InvalidPatchError, match="no images for that volume"):
        PatchDataset(result, {"x": images[0]})
    with pytest.raises(clasp_rs.InvalidPatchError, match="know their batch index"):
        PatchDataset([Patch("x", (0, 0, 0), (1, 1, 1))], images)
    with pytest.raises(clasp_rs.InvalidPatchError, match="batch index 2, but the images hold 2"):
        PatchDataset([p for p in result if p.index == 2], images[:2])
    with pytest.raises(clasp_rs.InvalidPatchError, match="outside"):
        PatchDataset(result, images[:, :, :2])
