"""How a person sees a stratum: one name for each in every table, legend and file.

A stratum is a foreground class label ``c`` (patches ranked by ``u_c = p_c · u``) or ``-1``
(ranked by the predictive entropy ``u`` itself).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ENTROPY_STRATUM", "ENTROPY_STRATUM_NAME", "stratum_label", "stratum_name"]

ENTROPY_STRATUM = -1
ENTROPY_STRATUM_NAME = "entropy"
"""The name of stratum -1 wherever it is shown."""


def stratum_name(stratum: int, label_names: Mapping[int, str]) -> str:
    """``entropy`` for stratum -1, else the class name (``class N`` when unnamed)."""
    if stratum == ENTROPY_STRATUM:
        return ENTROPY_STRATUM_NAME
    return label_names.get(int(stratum), f"class {int(stratum)}")


def stratum_label(stratum: int, label_names: Mapping[int, str]) -> str:
    """The stratum and its name, as tables and legends show it: ``1 (liver)``,
    ``-1 (entropy)``."""
    return f"{int(stratum)} ({stratum_name(stratum, label_names)})"
