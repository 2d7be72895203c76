"""Small JSON files, written atomically (see :mod:`clasp_rs._atomic`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from clasp_rs._atomic import write_text_atomic
from clasp_rs.exceptions import DatasetError

__all__ = ["read_json", "write_json"]


def write_json(path: str | os.PathLike[str], doc: Any, *, overwrite: bool = True) -> Path:
    """Write ``doc`` as JSON to ``path`` atomically.

    Args:
        overwrite: when False, fail instead of replacing an existing file (hard link).

    Raises:
        FileExistsError: ``overwrite`` is False and ``path`` exists.
    """
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    return write_text_atomic(path, text, overwrite=overwrite)


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Read a JSON file; ``what`` names it in errors.

    Raises:
        FileNotFoundError: no such file.
        DatasetError: not valid JSON.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(2, f"{what} not found", str(file))
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{file}: {what} is not valid JSON ({err})") from None
