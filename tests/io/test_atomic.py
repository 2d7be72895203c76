"""Atomic file writing (clasp_rs._atomic): never-overwrite, replace, permissions, clean-up."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from clasp_rs._atomic import atomic_path, write_text_atomic


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def test_new_file_written_and_temp_gone(tmp_path):
    dest = tmp_path / "a.json"
    assert write_text_atomic(dest, "héllo\n", overwrite=False) == dest
    assert dest.read_text(encoding="utf-8") == "héllo\n"
    assert _names(tmp_path) == ["a.json"]


def test_never_overwrites(tmp_path):
    dest = tmp_path / "a.json"
    dest.write_text("old")
    with pytest.raises(FileExistsError, match="never overwritten") as info:
        write_text_atomic(dest, "new", overwrite=False)
    assert info.value.errno == errno.EEXIST and info.value.filename == str(dest)
    assert dest.read_text() == "old"
    assert _names(tmp_path) == ["a.json"]


def test_never_overwrites_a_file_created_while_writing(tmp_path):
    # the pre-check passes; another writer creates the file before we publish
    dest = tmp_path / "a.json"
    with pytest.raises(FileExistsError, match="custom message") as info:
        with atomic_path(dest, overwrite=False, exists_message="custom message") as tmp:
            tmp.write_text("mine")
            dest.write_text("theirs")
    assert info.value.filename == str(dest)
    assert dest.read_text() == "theirs"
    assert _names(tmp_path) == ["a.json"]


def test_dangling_symlink_counts_as_existing(tmp_path):
    dest = tmp_path / "a.json"
    dest.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        write_text_atomic(dest, "x", overwrite=False)
    assert not (tmp_path / "nowhere").exists()


def test_overwrite_replaces(tmp_path):
    dest = tmp_path / "a.json"
    dest.write_text("old")
    write_text_atomic(dest, "new", overwrite=True)
    assert dest.read_text() == "new"
    assert _names(tmp_path) == ["a.json"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_permissions_follow_umask(tmp_path, umask_027, overwrite):
    dest = tmp_path / "a.json"
    write_text_atomic(dest, "x", overwrite=overwrite)
    plain = tmp_path / "plain.json"
    plain.write_text("x")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask_027 == 0o640
    assert stat.S_IMODE(dest.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.parametrize("overwrite", [False, True])
def test_temp_removed_and_dest_untouched_on_failure(tmp_path, overwrite):
    dest = tmp_path / "a.json"
    if overwrite:
        dest.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(dest, overwrite=overwrite) as tmp:
            assert tmp.parent == tmp_path and tmp.exists()
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert not tmp.exists()
    if overwrite:
        assert _names(tmp_path) == ["a.json"] and dest.read_text() == "old"
    else:
        assert _names(tmp_path) == []


def test_scratch_folder_and_suffix(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    dest = tmp_path / "label.nii.gz"
    with atomic_path(dest, overwrite=True, scratch=scratch, suffix=".nii.gz") as tmp:
        assert tmp.parent == scratch and tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"data")
    assert dest.read_bytes() == b"data"
    assert _names(scratch) == []


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text_atomic(tmp_path / "missing" / "a.json", "x", overwrite=False)


def test_filesystem_without_hard_links_falls_back_to_checked_rename(tmp_path, monkeypatch):
    # os.link fails with EPERM on filesystems that have no hard links (e.g. some FUSE mounts)
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    dest = tmp_path / "a.json"
    write_text_atomic(dest, "x", overwrite=False)
    assert dest.read_text() == "x" and _names(tmp_path) == ["a.json"]
    with pytest.raises(FileExistsError):
        write_text_atomic(dest, "y", overwrite=False)
    dest.unlink()
    with pytest.raises(FileExistsError):
        with atomic_path(dest, overwrite=False) as tmp:
            tmp.write_text("mine")
            dest.write_text("theirs")
    assert dest.read_text() == "theirs" and _names(tmp_path) == ["a.json"]


def test_does_not_touch_the_process_umask(tmp_path, monkeypatch):
    # os.umask is process-wide: setting it to read it would race with threads creating files
    def forbidden(mask):
        raise AssertionError("os.umask called")

    monkeypatch.setattr(os, "umask", forbidden)
    write_text_atomic(tmp_path / "a.json", "x", overwrite=False)
    write_text_atomic(tmp_path / "a.json", "y", overwrite=True)
    assert (tmp_path / "a.json").read_text() == "y"
