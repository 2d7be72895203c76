"""ITK-SNAP label descriptions: the text file ITK-SNAP loads with *Segmentation → Import
Label Descriptions* (``itksnap -s boxes.nii.gz -l labels.txt``), so the values of a box
label map show with the patch names and colours."""

from __future__ import annotations

from collections.abc import Sequence

from clasp_rs.export.labels import BoxLabel

__all__ = ["itksnap_label_description"]

_HEADER = """\
################################################
# ITK-SnAP Label Description File (written by clasp-rs)
# File format:
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
# Fields:
#    IDX:   Zero-based index
#    -R-:   Red color component (0..255)
#    -G-:   Green color component (0..255)
#    -B-:   Blue color component (0..255)
#    -A-:   Label transparency (0.00 .. 1.00)
#    VIS:   Label visibility (0 or 1)
#    MSH:   Label mesh visibility (0 or 1)
#  LABEL:   Label description
################################################
"""


def _line(value: int, rgb: Sequence[int], alpha: float, visible: int, name: str) -> str:
    quoted = '"' + name.replace('"', "'") + '"'
    return (
        f"{value:5d} {rgb[0]:5d} {rgb[1]:4d} {rgb[2]:4d} {alpha:8.2f} {visible:4d} {visible:2d}"
        f"    {quoted}\n"
    )


def itksnap_label_description(labels: Sequence[BoxLabel]) -> str:
    """The label description text: 0 "Clear Label", then each patch ``k`` with its name and
    colour, opaque and visible."""
    text = _HEADER + _line(0, (0, 0, 0), 0.0, 0, "Clear Label")
    for label in labels:
        text += _line(label.value, label.colour, 1.0, 1, label.name)
    return text
