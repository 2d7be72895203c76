"""The MONAI Label adapter against MONAI Label's own Strategy / ScoringMethod interfaces and
its LocalDatastore."""

from __future__ import annotations

import numpy as np
import pytest

import clasp_rs
from clasp_rs import Patch

pytest.importorskip("monailabel", reason="needs clasp-rs[monailabel]")
sitk = pytest.importorskip("SimpleITK")

from monailabel.datastore.local import LocalDatastore  # noqa: E402
from monailabel.interfaces.tasks.scoring import ScoringMethod  # noqa: E402
from monailabel.interfaces.tasks.strategy import Strategy  # noqa: E402

from clasp_rs.adapters.monailabel import (  # noqa: E402
    ClaspPatchScoring,
    ClaspPatchStrategy,
    stored_patches,
)


def _probabilities(image: np.ndarray) -> np.ndarray:
    """A stand-in for MC dropout: two softmax 'passes' of the intensities, (2, 3, Z, Y, X)."""
    passes = []
    for temperature in (1.0, 1.5):
        logits = np.stack([np.zeros_like(image), image, -image]) / temperature
        e = np.exp(logits - logits.max(0))
        passes.append(e / e.sum(0))
    return np.stack(passes).astype(np.float32)


@pytest.fixture
def datastore(tmp_path) -> LocalDatastore:
    rng = np.random.default_rng(0)
    for i in range(3):
        volume = rng.normal(size=(8, 24, 24)).astype(np.float32)
        sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / f"case_{i:03d}.nii.gz"))
    return LocalDatastore(str(tmp_path), extensions=("*.nii.gz",))


def _predict(image_id: str, store: LocalDatastore) -> np.ndarray:
    image = sitk.GetArrayFromImage(sitk.ReadImage(store.get_image_uri(image_id)))
    return _probabilities(image)


def test_scoring_stores_the_query_and_the_strategy_serves_it(datastore) -> None:
    scoring = ClaspPatchScoring(_predict, n=6, patch_size=(4, 8, 8), seed=1, device="cpu")
    strategy = ClaspPatchStrategy()
    assert isinstance(scoring, ScoringMethod) and isinstance(strategy, Strategy)
    assert "ClaSP PE" in scoring.info()["description"]
    images = sorted(datastore.list_images())

    summary = scoring({}, datastore)
    assert {k: summary[k] for k in ("loop", "images", "patches", "unfilled")} == {
        "loop": 0,
        "images": 3,
        "patches": 6,
        "unfilled": 0,
    }
    direct = clasp_rs.query_patches(
        {i: _predict(i, datastore) for i in images}, 6, (4, 8, 8), seed=1, device="cpu"
    )
    stored = [p for i in images for p in stored_patches(datastore, i)]
    assert sorted(stored, key=lambda p: (p.file, p.coords)) == sorted(
        direct, key=lambda p: (p.file, p.coords)
    )
    assert {(p.file, p.stratum, p.key) for p in stored} == {
        (p.file, p.stratum, p.key) for p in direct
    }

    served = []
    while (answer := strategy({"strategy": "clasp"}, datastore)) is not None:
        served.append(answer)
    with_patches = {p.file for p in direct}
    assert sorted(a["id"] for a in served) == sorted(with_patches)
    assert served[0]["id"] == direct.patches[0].file  # the image of the best patch first
    for answer in served:
        keys = [e["key"] for e in answer["patches"]]
        assert keys == sorted(keys, reverse=True) and answer["loop"] == 0
        assert len(keys) == len(direct.for_volume(answer["id"]))

    # The next loop avoids everything stored and is served again.
    assert scoring({}, datastore)["loop"] == 1
    latest = [
        Patch(i, tuple(e["coords"]), tuple(e["size"]))
        for i in images
        for e in datastore.get_image_info(i)["clasp_patches"]
        if e["loop"] == 1
    ]
    assert len(latest) == 6
    assert not any(p.file == q.file and p.overlaps(q) for p in latest for q in stored)
    assert strategy({"strategy": "clasp"}, datastore)["loop"] == 1


def test_an_empty_datastore_serves_nothing(tmp_path) -> None:
    store = LocalDatastore(str(tmp_path), extensions=("*.nii.gz",))
    assert ClaspPatchStrategy()({"strategy": "clasp"}, store) is None
