"""Small JSON files written atomically (temp file in the same folder, fsync, os.replace)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from clasp_rs.exceptions import DatasetError

__all__ = ["read_json", "write_json"]


def write_json(path: str | os.PathLike[str], doc: Any, *, overwrite: bool = True) -> Path:
    """Write ``doc`` as JSON to ``path`` atomically.

    Args:
        overwrite: when False, fail instead of replacing an existing file (hard link).

    Raises:
        FileExistsError: ``overwrite`` is False and ``path`` exists.
    """
    dest = Path(path)
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, dest)
        else:
            os.link(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


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
