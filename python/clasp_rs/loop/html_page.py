"""What the experiment report and the study report share: the table style and figures
embedded as data URIs, so each page is one file a person can mail or archive."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path

__all__ = ["TABLE_CSS", "figures_html", "table_cell"]

#: Numbers right-aligned so digits line up; the first two columns hold names, and a ``text``
#: cell holds a list of words.
TABLE_CSS = """table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eee; }
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2),
.text { text-align: left; }
img { max-width: 100%; } figure { margin: 0 0 2em 0; }"""


def table_cell(text: str, title: str = "", cls: str = "") -> str:
    """One escaped ``<td>``; ``title`` shows on hover, ``cls`` is its CSS class."""
    attrs = (f' title="{html.escape(title)}"' if title else "") + (f' class="{cls}"' if cls else "")
    return f"<td{attrs}>{html.escape(text)}</td>"


def _embedded_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def figures_html(images: Iterable[Path]) -> str:
    """One ``<figure>`` per PNG, captioned with its file name (the file sits next to the
    page)."""
    return "".join(
        f"<figure>{_embedded_png(p)}<figcaption>{html.escape(p.name)}</figcaption></figure>"
        for p in images
    )
