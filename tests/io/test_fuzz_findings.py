"""Inputs the fuzzer (``tests/fuzz``) found breaking the error rule, kept as regression tests:
each raised something other than a ClaspError/OSError with a one-line message. (Found by
``tests/fuzz/fuzz_run.py``; see benches/RESULTS.md for the runs.)"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from clasp_rs import ClaspPE, NpyFormatError
from clasp_rs.io.probabilities import discover_probabilities


def _npy(header: str, data: bytes = b"") -> bytes:
    body = header.encode("latin-1")
    body += b" " * ((-(10 + len(body) + 1)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body + data


def _npz(member: bytes, name: str = "probabilities.npy") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, member)
    return buffer.getvalue()


def _query(path: Path) -> None:
    ClaspPE().query({"case": str(path)}, 2, 0, (1, 1, 1), device="cpu")


def _one_line_npy_error(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NpyFormatError, match=match) as info:
        call()
    assert len(str(info.value).splitlines()) == 1, str(info.value)


def test_npz_member_that_is_no_npy(tmp_path: Path) -> None:
    # np.load hands such a member back as raw bytes: AttributeError 'bytes' has no 'dtype'.
    path = tmp_path / "case.npz"
    path.write_bytes(_npz(b"not an array at all"))
    _one_line_npy_error(lambda: _query(path), "not a readable .npy file")


def test_npy_header_numpy_cannot_tokenize(tmp_path: Path) -> None:
    # numpy's header parser raised tokenize.TokenError ("EOF in multi-line statement").
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 1, 1), "
    for name, data in (("case.npy", _npy(header)), ("case.npz", _npz(_npy(header)))):
        path = tmp_path / name
        path.write_bytes(data)
        _one_line_npy_error(lambda p=path: _query(p), "not a readable .npy file")
    export = tmp_path / "export"
    export.mkdir()
    (export / "case_0.npz").write_bytes(_npz(_npy(header)))
    _one_line_npy_error(lambda: discover_probabilities(export), "unreadable array header")


def test_npz_header_claiming_a_huge_array_allocates_nothing(tmp_path: Path) -> None:
    # Found while fixing the member above (np.load allocated what the header claimed:
    # MemoryError "Unable to allocate 7.11 PiB"); the fuzzer's arrays are too small for it.
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 100000, 100000, 100000), }"
    path = tmp_path / "case.npz"
    path.write_bytes(_npz(_npy(header, b"\0" * 64)))
    _one_line_npy_error(lambda: _query(path), "needs 8000000000000000 bytes, the archive holds 64")


def test_npy_header_whose_size_overflows_int64(tmp_path: Path) -> None:
    # fuzz_run.py seed 1002 (strategy_query): 2 * 2**62 float32 wrapped to a negative byte
    # count in the truncation check, which passed; then "array is too big" (ValueError).
    path = tmp_path / "case.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 1, 4611686018427387904)}"
    path.write_bytes(_npy(header))
    _one_line_npy_error(lambda: _query(path), "truncated .npy file")


def test_npz_of_a_real_export_still_reads(tmp_path: Path) -> None:
    p = np.random.default_rng(0).random((3, 4, 5, 5)).astype(np.float32)
    path = tmp_path / "case.npz"
    np.savez_compressed(path, probabilities=p / p.sum(0))
    assert len(ClaspPE().query({"case": str(path)}, 3, 0, (2, 2, 2), device="cpu")) == 3


def test_unknown_case_with_a_carriage_return_stays_on_one_line(tmp_path):
    """Found by export_query, seed 1796209462: a loop file naming the case "\\r0" (JSON
    escapes it) ended in a LoopFileError message that a carriage return split in two."""
    from clasp_rs.exceptions import LoopFileError
    from clasp_rs.query.steps import read_annotated

    loop = tmp_path / "loop_000.json"
    loop.write_bytes(b'{"patches": [{"file": "\\r0", "coords": [0, 0, 0], "size": [1, 1, 1]}]}')
    with pytest.raises(LoopFileError, match=r"not in the probability folder: \\r0$") as info:
        read_annotated([loop], ["case_0"])
    assert len(str(info.value).splitlines()) == 1, str(info.value)
