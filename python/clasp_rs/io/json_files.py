"""Small JSON files, written atomically (see :mod:`clasp_rs._atomic`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from clasp_rs._atomic import write_text_atomic
from clasp_rs._messages import escaped
from clasp_rs.exceptions import DatasetError

__all__ = ["parse_json_file", "read_json", "write_json"]


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
    if file.is_dir():
        raise IsADirectoryError(21, f"expected the {what} file, got a folder", str(file))
    if not file.is_file():
        raise FileNotFoundError(2, f"{what} not found", str(file))
    try:
        return parse_json_file(file)
    except ValueError as err:
        raise DatasetError(f"{escaped(str(file))}: {what} is {err}") from None


def parse_json_file(path: str | os.PathLike[str]) -> Any:
    """The JSON document in ``path`` (UTF-8).

    Every way the content can fail to be read as JSON is a ``ValueError`` with a one-line
    message saying which (callers add the file and raise their own error class): not UTF-8,
    not valid JSON, nested too deeply for the parser, an integer of more digits than Python
    converts.

    Raises:
        OSError: the file cannot be read.
        ValueError: the content is not readable JSON.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text ({err})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err})") from None
    except RecursionError:
        raise ValueError("not readable JSON: nested too deeply (thousands of levels)") from None
    except ValueError as err:  # int() refuses integers of more than 4300 digits
        raise ValueError(f"not readable JSON: {escaped(str(err))}") from None
