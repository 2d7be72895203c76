"""ClaSP PE in a MONAI Label app: a scoring method that queries patches over the datastore's
images, and an active-learning strategy that serves them image by image.

MONAI Label's active learning picks whole images; this adapter keeps its interface and adds
where to look. :class:`ClaspPatchScoring` runs the app's model on every image (the
``predict`` function the app provides, e.g. MC-dropout passes or an ensemble), makes one
:func:`~clasp_rs.query_patches` query across them, and stores each image's patches in its
datastore info under ``"clasp_patches"`` (a list of ``{"coords", "size", "stratum", "key",
"mean", "loop"}`` dicts, JSON like a loop file). :class:`ClaspPatchStrategy` then returns
the image whose best unserved patch ranks highest, with its patches: the annotator labels
those boxes. Patches of earlier loops stay in the info and are never queried again.

Register them in the app (``monailabel.interfaces.app.MONAILabelApp``)::

    def init_scoring_methods(self):
        return {"clasp": ClaspPatchScoring(predict, n=20, patch_size=(32, 64, 64))}

    def init_strategies(self):
        return {"clasp": ClaspPatchStrategy()}

and call ``/scoring/clasp`` (optionally ``{"loop": t}``) after each training round, then
``/activelearning/clasp`` for the next image. Needs ``pip install 'clasp-rs[monailabel]'``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from clasp_rs._optional import import_monailabel
from clasp_rs.drop_in import query_patches
from clasp_rs.patches import Patch

import_monailabel()  # a clear error naming the extra when MONAI Label is missing

from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.tasks.scoring import ScoringMethod  # noqa: E402
from monailabel.interfaces.tasks.strategy import Strategy  # noqa: E402

__all__ = ["INFO_KEY", "ClaspPatchScoring", "ClaspPatchStrategy", "stored_patches"]

#: The image-info key holding an image's queried patches.
INFO_KEY = "clasp_patches"
#: The image-info key holding the loop whose patches were last served for the image.
SERVED_KEY = "clasp_served_loop"


def stored_patches(datastore: Datastore, image_id: str, key: str = INFO_KEY) -> list[Patch]:
    """The patches stored for ``image_id`` (every loop), as :class:`~clasp_rs.Patch`
    objects whose ``file`` is the image id."""
    entries = datastore.get_image_info(image_id).get(key, [])
    return [
        Patch(
            image_id,
            tuple(e["coords"]),
            tuple(e["size"]),
            stratum=e.get("stratum"),
            mean=e.get("mean"),
            key=e.get("key"),
        )
        for e in entries
    ]


class ClaspPatchScoring(ScoringMethod):  # type: ignore[misc]
    """Query patches over the datastore's images and store each image's share.

    Args:
        predict: ``predict(image_id, datastore)`` -> the model's probabilities of that
            image, ``(M, C, Z, Y, X)`` (M ensemble members or MC-dropout passes) or
            ``(C, Z, Y, X)``, numpy or torch, as :func:`~clasp_rs.query_patches` takes them.
        n: patches per query (over all images).
        patch_size: ``(dz, dy, dx)``.
        strategy, n_loops, seed, stride, per_volume, logits, device: as for
            :func:`~clasp_rs.query_patches`.
        key: the image-info key to store the patches under.

    Request keys: ``"loop"`` (default: one more than the last stored loop, 0 at first).
    Returns ``{"loop", "images", "patches", "unfilled", "latency"}``.
    """

    def __init__(
        self,
        predict: Callable[[str, Datastore], Any],
        n: int,
        patch_size: Sequence[int],
        *,
        strategy: str = "clasp-pe",
        n_loops: int = 5,
        seed: int = 0,
        stride: int | Sequence[int] = 1,
        per_volume: int | None = None,
        logits: bool = False,
        device: str = "auto",
        key: str = INFO_KEY,
    ) -> None:
        super().__init__(f"ClaSP PE patch query ({strategy}, {n} patches per loop)")
        self.predict = predict
        self.n = n
        self.patch_size = tuple(patch_size)
        self.options: dict[str, Any] = {
            "strategy": strategy,
            "n_loops": n_loops,
            "seed": seed,
            "stride": stride,
            "per_volume": per_volume,
            "logits": logits,
            "device": device,
        }
        self.key = key

    def _next_loop(self, datastore: Datastore, images: list[str]) -> int:
        loops = [
            int(e["loop"])
            for image in images
            for e in datastore.get_image_info(image).get(self.key, [])
        ]
        return max(loops) + 1 if loops else 0

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        start = time.time()
        images = sorted(datastore.list_images())
        loop = int(request.get("loop", self._next_loop(datastore, images)))
        annotated = [p for image in images for p in stored_patches(datastore, image, self.key)]
        probabilities = {image: self.predict(image, datastore) for image in images}
        result = query_patches(
            probabilities, self.n, self.patch_size, loop=loop, annotated=annotated, **self.options
        )
        for image in images:
            new = [
                {
                    "coords": list(p.coords),
                    "size": list(p.size),
                    "stratum": p.stratum,
                    "key": p.key,
                    "mean": p.mean,
                    "loop": loop,
                }
                for p in result.for_volume(image)
            ]
            if new:
                entries = datastore.get_image_info(image).get(self.key, [])
                datastore.update_image_info(image, {self.key: [*entries, *new]})
        return {
            "loop": loop,
            "images": len(images),
            "patches": len(result),
            "unfilled": result.unfilled,
            "latency": round(time.time() - start, 3),
        }


class ClaspPatchStrategy(Strategy):  # type: ignore[misc]
    """Serve the image whose best patch of the latest query ranks highest, once per loop.

    Returns ``{"id": image_id, "patches": [{"coords", "size", "stratum", "key", "mean",
    "loop"}, ...], "loop": loop}`` (the image's patches of that loop, best first), or None
    when every image with patches of the latest loop has been served.

    Args:
        key: the image-info key the scoring method stored the patches under.
    """

    def __init__(self, key: str = INFO_KEY) -> None:
        super().__init__("Image with the best ClaSP PE patch, and its patches")
        self.key = key

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        infos = {image: datastore.get_image_info(image) for image in datastore.list_images()}
        loops = [int(e["loop"]) for info in infos.values() for e in info.get(self.key, [])]
        if not loops:
            return None
        loop = max(loops)
        best: tuple[float, str] | None = None
        for image in sorted(infos):
            info = infos[image]
            if info.get(SERVED_KEY) == loop:
                continue
            keys = [
                float("-inf") if e.get("key") is None else float(e["key"])
                for e in info.get(self.key, [])
                if int(e["loop"]) == loop
            ]
            if keys and (best is None or max(keys) > best[0]):
                best = (max(keys), image)
        if best is None:
            return None
        image = best[1]
        patches = [e for e in infos[image][self.key] if int(e["loop"]) == loop]
        patches.sort(key=lambda e: math.inf if e.get("key") is None else -float(e["key"]))
        datastore.update_image_info(image, {SERVED_KEY: loop})
        return {"id": image, "patches": patches, "loop": loop}
