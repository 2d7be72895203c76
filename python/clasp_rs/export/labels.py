"""Names and colours of exported patches, shared by every viewer format.

Patches of one case are numbered 1..k in the order of the loop file; patch ``k`` is value
``k`` of the box label map, ROI ``<case> #k (stratum)`` in 3D Slicer, label ``k`` of the
ITK-SNAP description and colour ``PALETTE[(k - 1) % len(PALETTE)]`` everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clasp_rs.patches import Patch

__all__ = ["PALETTE", "BoxLabel", "box_labels", "stratum_name"]

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)
"""Twenty colours that stay apart on grey CT/MR slices (RGB, 0..255)."""


def stratum_name(stratum: int | None, label_names: Mapping[int, str]) -> str:
    """What a patch was chosen for: its class name, ``any class`` (stratum -1, ranked by
    uncertainty alone), ``class N`` for a value ``label_names`` lacks, or ``""``."""
    if stratum is None:
        return ""
    if stratum == -1:
        return "any class"
    return label_names.get(int(stratum), f"class {int(stratum)}")


@dataclass(frozen=True)
class BoxLabel:
    """One exported patch.

    Attributes:
        value: its number ``k`` (1..k) in the case, the value of its box label map voxels.
        name: ``<case> #k (stratum)`` (``<case> #k`` without a stratum).
        stratum: what it was chosen for (see :func:`stratum_name`).
        colour: RGB 0..255.
    """

    value: int
    name: str
    stratum: str
    colour: tuple[int, int, int]

    @property
    def colour_unit(self) -> list[float]:
        """The colour as RGB 0..1 (Slicer, matplotlib)."""
        return [round(c / 255.0, 6) for c in self.colour]


def box_labels(
    case: str, patches: Sequence[Patch], label_names: Mapping[int, str]
) -> list[BoxLabel]:
    """The label of each of a case's patches, numbered 1..k in order."""
    out = []
    for k, patch in enumerate(patches, start=1):
        stratum = stratum_name(patch.stratum, label_names)
        name = f"{case} #{k}" + (f" ({stratum})" if stratum else "")
        out.append(BoxLabel(k, name, stratum, PALETTE[(k - 1) % len(PALETTE)]))
    return out
