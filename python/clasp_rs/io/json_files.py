"""Small JSON files, written atomically (see :mod:`clasp_rs._atomic`)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clasp_rs._atomic import write_text_atomic
from clasp_rs._messages import escaped
from clasp_rs.exceptions import DatasetError

__all__ = ["malformed_json", "parse_json_file", "read_folder_json", "read_json", "write_json"]


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


def read_folder_json(
    root: str | os.PathLike[str],
    name: str,
    *,
    kind: str,
    command: str,
    version: int,
    hint: str = "",
) -> tuple[Path, Any]:
    """The resolved folder ``root`` and the document of its file ``name``, which ``command``
    writes with ``"version": version`` (an experiment's or a study's own file).

    Args:
        kind: what the folder is, for the error when it is missing (``"experiment"``).
        hint: appended to the error of a malformed document (see :func:`malformed_json`).

    Raises:
        FileNotFoundError: the folder or its file does not exist.
        DatasetError: not valid JSON, no ``version`` or another one.
    """
    folder = Path(root).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(
            2, f"{kind} folder not found (create it with {command})", str(folder)
        )
    path = folder / name
    doc = read_json(path, f"{name} (written by {command})")
    with malformed_json(path, hint):
        if doc["version"] != version:
            raise DatasetError(
                f"{path}: format version {doc['version']}, this clasp-rs reads version {version}"
            )
    return folder, doc


@contextlib.contextmanager
def malformed_json(path: Path, hint: str = "") -> Iterator[None]:
    """Turn the ``KeyError``/``TypeError``/``ValueError`` of reading fields of the document
    of ``path`` into one ``DatasetError`` line (a hand-edited file must not end in a
    traceback); ``hint`` is appended, e.g. ``"; expected the file clasp-rs init writes"``.
    A ``DatasetError`` raised inside passes unchanged."""
    try:
        yield
    except DatasetError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(
            f"{path} is incomplete or malformed ({type(err).__name__}: {err}){hint}"
        ) from None


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
