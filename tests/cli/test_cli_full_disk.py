"""A full disk ends ``clasp-rs query`` with one error naming the path, and leaves nothing
behind (issue 10, fault 1: the score maps were written through a memory map, so a full
tmpfs killed the query with SIGBUS, exit 135, and left ``.clasp_rs_maps_*`` with a ``.tmp``).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from small_fs import run_on_small_fs, small_fs_or_skip

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "probabilities"


def _readme_query(out: str) -> str:
    # The README's first command, on the bundled example, with --out on the small disk.
    argv = [
        sys.executable,
        "-m",
        "clasp_rs.cli",
        "query",
        str(EXAMPLE),
        "--dataset-json",
        str(EXAMPLE / "dataset.json"),
        "--n",
        "12",
        "--loop",
        "0",
        "--patch-size",
        "8",
        "16",
        "16",
        "--device",
        "cpu",
        "--out",
    ]
    return " ".join(shlex.quote(a) for a in argv) + f' "{out}"'


def test_query_on_a_nearly_full_disk_is_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    small_fs_or_skip(tmp_path)
    mount = tmp_path / "disk"
    # A 20 MB disk filled to 19 MB (the reproduction: the example's 16 score maps,
    # 720 pages of 4 kB, do not fit), then free space for exactly the maps (the loop file,
    # one more page, does not fit) and for the maps and the loop file.
    fills = {"19MB": 19_000_000, "maps": (5120 - 720) * 4096, "all": (5120 - 721) * 4096}
    script = "".join(
        f'rm -f "$MNT/fill" && head -c {fill} /dev/zero > "$MNT/fill"\n'
        + _readme_query("$MNT/loop_001.json")
        + f' 2> "$MNT/../err_{name}"\necho rc=$?\nls -A "$MNT" | tr "\\n" " "\necho\n'
        + 'rm -f "$MNT/loop_001.json"\n'
        for name, fill in fills.items()
    )
    done = run_on_small_fs(script, mount, size_mb=20, fill_bytes=0)
    outcomes = done.stdout.splitlines()
    assert len(outcomes) == 2 * len(fills), (done.stdout, done.stderr)
    for k, name in enumerate(fills):
        rc, left = outcomes[2 * k], outcomes[2 * k + 1].split()
        errors = (tmp_path / f"err_{name}").read_text().strip().splitlines()
        if rc == "rc=0":
            assert left == ["fill", "loop_001.json"], name
            continue
        # Before the fix: rc=135 (SIGBUS) and a .clasp_rs_maps_* folder with a .tmp left.
        assert rc == "rc=2" and left == ["fill"], (name, rc, left, errors)
        assert len(errors) == 1, (name, errors)
        assert errors[0].startswith("clasp-rs: error: No space left on device"), errors
        assert f"{mount}/" in errors[0], errors
    assert outcomes[0] == "rc=2" and outcomes[-2] == "rc=0"


def test_loop_file_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    small_fs_or_skip(tmp_path)
    mount = tmp_path / "disk"
    code = (
        "import clasp_rs\n"
        "try:\n"
        "    clasp_rs.write_loop_file(sys.argv[1], [clasp_rs.Patch('a', (0, 0, 0), (1, 1, 1))])\n"
        "except OSError as e:\n"
        "    print('filename', e.filename); print('strerror', e.strerror)\n"
    )
    script = (
        f"{shlex.quote(sys.executable)} -c {shlex.quote('import sys; ' + code)} "
        '"$MNT/loop_001.json"\necho rc=$?\nls -A "$MNT"\n'
    )
    done = run_on_small_fs(script, mount, size_mb=1, fill_bytes=2**20)
    out = done.stdout.splitlines()
    assert f"filename {mount}/loop_001.json" in out, (done.stdout, done.stderr)
    assert "strerror No space left on device" in out
    assert out[out.index("rc=0") + 1 :] == ["fill"]
