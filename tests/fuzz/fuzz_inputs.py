"""Hypothesis strategies for malformed inputs: arrays of any dtype, shape, layout and values;
numbers at and beyond every range; JSON documents and bytes of loop files; ``.npy`` and
``.npz`` bytes with lying headers.

Arrays are drawn as a seed for numpy's generator plus a few choices (dtype, shape, layout,
special values), so that a batch draws hundreds of them quickly; hypothesis still shrinks
the choices of a failing example.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import Any

import numpy as np
from hypothesis import strategies as st

# Integers at the edges of every range the engine and JSON care about.
EDGE_INTS = [0, 1, 2, 3, -1, 2**31, 2**32, 2**53 + 1, 2**62, 2**62 + 1, 2**63 - 1, 2**63]
EDGE_INTS += [2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, 10**400]

DTYPES = ["<f2", "<f4", "<f8", ">f4", ">f8", "<i4", "|u1", "|b1", "<c8", "<f16", "O", "<U2"]
SPECIALS = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e-310, 1e38, 1e300, 65504.0, 70000.0]


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (hypothesis weights integer bounds heavily, so
    ``integers(0, k) == 0`` would be far more often); shrinks to False."""
    return bool(draw(st.sampled_from([False] * (one_in - 1) + [True])))


def small_ints() -> st.SearchStrategy[int]:
    return st.integers(-2, 9)


def wild_ints() -> st.SearchStrategy[int]:
    return st.one_of(small_ints(), st.sampled_from(EDGE_INTS), st.integers())


def wild_scalars() -> st.SearchStrategy[Any]:
    """Anything a caller might pass for a number."""
    return st.one_of(
        wild_ints(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.text(max_size=3),
        st.sampled_from([np.int64(3), np.uint64(2**64 - 1), np.float32(2.5), np.float16(np.nan)]),
        st.sampled_from([b"3", 3j, [], ()]),
    )


def triples() -> st.SearchStrategy[Any]:
    """Patch sizes and strides: mostly 3 small ints, sometimes anything."""
    three = st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))
    wild_three = st.tuples(wild_ints(), wild_ints(), wild_ints())
    return st.one_of(
        three,
        three,
        three,
        wild_three,
        st.lists(small_ints(), max_size=5),
        wild_scalars(),
        st.builds(np.array, three),
    )


@st.composite
def arrays(draw: st.DrawFn, ndim: int | None = None, max_side: int = 9) -> np.ndarray:
    """A numpy array: any of ``DTYPES``, any shape (``ndim`` axes when given), any layout,
    non-negative values with a few specials sprinkled in."""
    dims = draw(st.integers(0, 5)) if ndim is None else ndim
    shape = tuple(draw(st.lists(st.integers(0, max_side), min_size=dims, max_size=dims)))
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from(DTYPES + ["<f4", "<f8"] * 4))
    rng = np.random.default_rng(seed)
    values = np.asarray(rng.random(shape)) * draw(st.sampled_from([1.0, 1e-30, 1e30, 1e300]))
    if values.size and rarely(draw, 4):
        flat = values.reshape(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[rng.integers(flat.size)] = draw(st.sampled_from(SPECIALS))
    with np.errstate(all="ignore"):
        if dtype == "O":
            out = values.astype(object)
        elif dtype == "<U2":
            out = values.astype("<U2")
        else:
            out = values.astype(np.dtype(dtype))
    out = np.asarray(out)  # 0-d arithmetic gives numpy scalars
    layout = draw(st.sampled_from(["c", "c", "f", "reversed", "strided", "transposed"]))
    if layout == "f":
        out = np.asfortranarray(out)
    elif layout == "reversed" and out.ndim:
        out = out[::-1]
    elif layout == "strided" and out.ndim:
        out = np.repeat(out, 2, axis=0)[::2]
    elif layout == "transposed":
        out = out.T
    return out


@st.composite
def probabilities(draw: st.DrawFn, valid: bool = False) -> np.ndarray:
    """Class probabilities ``(C, Z, Y, X)`` or ``(M, C, Z, Y, X)``: float and summing to 1
    over C when ``valid``, else sometimes not, or of another shape or dtype entirely."""
    kind = "valid" if valid else draw(st.sampled_from(["valid", "raw", "any"]))
    if kind == "any":
        return draw(arrays(max_side=5))
    folds = draw(st.sampled_from([None, 1, 2, 3]))
    channels = draw(st.integers(2, 4) if valid else st.integers(1, 4))
    side = st.integers(1, 7)
    shape = (channels, draw(side), draw(side), draw(side))
    if folds is not None:
        shape = (folds, *shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = np.asarray(rng.random(shape)) + draw(st.sampled_from([0.0, 0.0, 1e-12]))
    if kind == "valid":
        values = values / values.sum(axis=-4, keepdims=True)
    dtypes = ["<f4", "<f8", ">f4"] if valid else ["<f4", "<f8", "<f2", ">f4", "<i4"]
    dtype = draw(st.sampled_from(dtypes))
    with np.errstate(all="ignore"):
        return np.asarray(values.astype(np.dtype(dtype)))


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        wild_ints(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=6),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def loop_entries(draw: st.DrawFn) -> Any:
    """One element of a loop file's ``patches``: mostly well-formed, each field sometimes
    replaced by anything."""
    entry: dict[str, Any] = {
        "file": draw(st.one_of(st.sampled_from(["case_001.npy", "case_002.nii.gz"]), st.text())),
        "coords": draw(st.lists(st.integers(0, 8), min_size=3, max_size=3)),
        "size": draw(st.lists(st.integers(1, 6), min_size=3, max_size=3)),
    }
    for key in ("score", "stratum"):
        if draw(st.booleans()):
            entry[key] = draw(st.one_of(st.floats(), st.integers(-1, 3), st.none()))
    for key in list(entry) + ["score", "stratum"]:
        if rarely(draw, 8):
            entry[key] = draw(json_values())
        if rarely(draw, 16):
            entry.pop(key, None)
    if rarely(draw, 13):
        return draw(json_values())
    return entry


@st.composite
def loop_file_bytes(draw: st.DrawFn) -> bytes:
    """The bytes of a ``loop_NNN.json``: a (mostly) loop-shaped document, then perhaps cut,
    nested very deeply, re-encoded, or replaced by random bytes."""
    doc: Any = {"patches": draw(st.lists(loop_entries(), max_size=5))}
    if draw(st.booleans()):
        doc["meta"] = draw(json_values())
    if rarely(draw, 10):
        doc = draw(json_values())
    text = json.dumps(doc, allow_nan=True)
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "deep", "bom", "utf16", "bytes"]))
    if damage == "cut":
        text = text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    elif damage == "deep":
        depth = draw(st.sampled_from([900, 1100, 5000, 100_000]))
        text = '{"patches": [' + "[" * depth + "]" * depth + "]}"
    elif damage == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    elif damage == "utf16":
        return text.encode("utf-16")
    elif damage == "bytes":
        return draw(st.binary(max_size=64))
    return text.encode("utf-8", "surrogatepass")


def _npy_header(descr: Any, fortran: Any, shape: Any, extra: dict[str, Any]) -> str:
    items = {"descr": descr, "fortran_order": fortran, "shape": shape, **extra}
    return repr(items)


@st.composite
def npy_bytes(draw: st.DrawFn) -> bytes:
    """The bytes of a ``.npy`` file: a (mostly) valid header for a small float volume, with
    any field, the version, the header length or the data length sometimes wrong."""
    ndim = draw(st.sampled_from([3, 3, 3, 4, 4, 0, 1, 2, 5]))
    shape: Any = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    if rarely(draw, 6):
        shape = tuple(draw(st.lists(wild_ints(), min_size=ndim, max_size=ndim)))
    if rarely(draw, 12):
        shape = draw(json_values(4))
    descr: Any = draw(st.sampled_from(["<f4", "<f4", "<f8", "<f2", ">f4", "|b1", "<i8", "|O"]))
    if rarely(draw, 12):
        descr = draw(st.one_of(st.text(max_size=4), json_values(3)))
    fortran: Any = draw(st.sampled_from([False, False, False, True]))
    if rarely(draw, 16):
        fortran = draw(json_values(2))
    extra = {"oops": 1} if rarely(draw, 16) else {}
    header = _npy_header(descr, fortran, shape, extra)
    if rarely(draw, 16):
        header = draw(st.text(max_size=40))
    version = draw(st.sampled_from([(1, 0)] * 6 + [(2, 0), (3, 0), (0, 9), (255, 255)]))
    encoded = header.encode("latin-1", "replace")
    fmt = "<H" if version[0] == 1 else "<I"
    prefix = 6 + 2 + struct.calcsize(fmt)
    pad = (-(prefix + len(encoded) + 1)) % 64
    body = encoded + b" " * pad + b"\n"
    length = len(body)
    if rarely(draw, 10):
        length = draw(st.sampled_from([0, 1, length - 1, length + 1, 2**16 - 1]))
    length = max(0, min(length, 2**16 - 1 if fmt == "<H" else 2**32 - 1))
    magic = b"\x93NUMPY" if draw(st.integers(0, 19)) else b"\x93NUMPZ"
    head = magic + bytes(version) + struct.pack(fmt, length) + body
    try:
        count = int(np.prod([int(s) for s in shape])) if isinstance(shape, tuple) else 0
        itemsize = np.dtype(descr).itemsize if isinstance(descr, str) else 4
    except (TypeError, ValueError, OverflowError):
        count, itemsize = 0, 4
    count = max(0, min(count, 4096))
    size = count * itemsize
    cut = draw(st.sampled_from(["exact"] * 6 + ["short", "long", "none"]))
    if cut == "short":
        size = draw(st.integers(0, max(size - 1, 0)))
    elif cut == "long":
        size += draw(st.integers(1, 64))
    elif cut == "none":
        size = 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data = rng.random(size // 4 + 1).astype("<f4").tobytes()[:size]
    if descr in ("<f2", "<f8") and cut == "exact":
        data = rng.random(count).astype(descr).tobytes()
    return head + data


@st.composite
def npz_bytes(draw: st.DrawFn) -> bytes:
    """The bytes of an nnU-Net ``<case>.npz``: a zip of ``probabilities.npy`` (from
    :func:`npy_bytes` or a real probability array), sometimes with another key, several
    members, or cut short."""
    buffer = io.BytesIO()
    if draw(st.booleans()):
        member = draw(npy_bytes())
    else:
        array = draw(probabilities())
        raw = io.BytesIO()
        np.save(raw, array, allow_pickle=True)
        member = raw.getvalue()
    name = draw(st.sampled_from(["probabilities.npy"] * 5 + ["probs.npy", "probabilities"]))
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        archive.writestr(name, member)
        if rarely(draw, 6):
            archive.writestr("segmentation.npy", member)
    data = buffer.getvalue()
    if rarely(draw, 8):
        data = data[: draw(st.integers(0, len(data)))]
    return data
