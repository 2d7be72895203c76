"""A small, nearly full filesystem for tests of what a full disk does (issue 10, fault 1).

The script runs in its own mount namespace (``unshare -m`` as root, ``unshare -rm`` as a
user with user namespaces), where a tmpfs of a few MB is mounted; the mount disappears with
the namespace, so nothing is left mounted on the machine even when a test fails. Where no
such namespace can be made, :func:`small_fs_or_skip` skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["run_on_small_fs", "small_fs_or_skip"]


def _unshare() -> list[str]:
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]


def small_fs_or_skip(tmp_path: Path) -> None:
    """Skip the test unless a tmpfs can be mounted in a private mount namespace here."""
    if shutil.which("unshare") is None:
        pytest.skip("no small filesystem: util-linux's unshare is not installed")
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(
        [*_unshare(), "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    probe.rmdir()
    if done.returncode != 0:
        pytest.skip(
            "no small filesystem: cannot mount a tmpfs in a private mount namespace here "
            f"({done.stderr.strip() or done.returncode})"
        )


def run_on_small_fs(
    script: str, mount: Path, *, size_mb: int, fill_bytes: int, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the bash ``script`` with a ``size_mb`` MB tmpfs mounted on ``mount`` (an empty
    folder) that a file ``fill`` of ``fill_bytes`` bytes already fills; ``$MNT`` names the
    mount in the script. Returns the finished process (the script's own output)."""
    mount.mkdir(exist_ok=True)
    setup = (
        "set -u\n"
        f'MNT="{mount}"\n'
        f'mount -t tmpfs -o size={size_mb}m tmpfs "$MNT" || exit 90\n'
        f'head -c {fill_bytes} /dev/zero > "$MNT/fill" || exit 91\n'
    )
    return subprocess.run(
        [*_unshare(), "bash", "-c", setup + script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
