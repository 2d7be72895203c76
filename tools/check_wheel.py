"""Check that built wheels install on glibc >= 2.17 (manylinux2014), independently of maturin.

Runs ``auditwheel show`` on each wheel and requires it to report the wheel consistent with
``manylinux_2_17_<arch>``; then reads the GNU version requirements of every shared library in
the wheel and prints the highest GLIBC symbol version any of them needs.

Run: ``python tools/check_wheel.py dist/clasp_rs-*.whl`` (``make wheel`` does).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

WANTED_GLIBC = (2, 17)


def glibc_versions(library: Path) -> set[tuple[int, ...]]:
    """Every ``GLIBC_x.y[.z]`` version that ``library``'s symbols require."""
    versions = set()
    with library.open("rb") as f:
        for section in ELFFile(f).iter_sections():
            if not isinstance(section, GNUVerNeedSection):
                continue
            for _needed, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    match = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)+)", aux.name)
                    if match:
                        versions.add(tuple(int(p) for p in match.group(1).split(".")))
    return versions


def check(wheel: Path) -> None:
    """Raise SystemExit with a one-line message when ``wheel`` needs more than glibc 2.17."""
    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    print(shown.stdout.strip())
    report = " ".join(shown.stdout.split())
    tag = re.search(r'is consistent with the following platform tag: "([^"]+)"', report)
    if shown.returncode != 0 or tag is None:
        raise SystemExit(f"check_wheel: auditwheel show failed on {wheel}: {shown.stderr.strip()}")
    if not re.fullmatch(r"manylinux_2_17_\w+", tag.group(1)):
        raise SystemExit(f"check_wheel: {wheel.name} is {tag.group(1)}, not manylinux_2_17")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        libraries = [n for n in archive.namelist() if re.search(r"\.so(\.|$)", n)]
        if not libraries:
            raise SystemExit(f"check_wheel: {wheel.name} holds no shared library")
        needed: set[tuple[int, ...]] = set()
        for name in libraries:
            needed |= glibc_versions(Path(archive.extract(name, tmp)))
    highest = max(needed, default=(0,))
    if highest > WANTED_GLIBC:
        raise SystemExit(f"check_wheel: {wheel.name} needs GLIBC_{'.'.join(map(str, highest))}")
    print(
        f"check_wheel: {wheel.name}: manylinux_2_17; highest GLIBC symbol version required: "
        f"{'.'.join(map(str, highest))}"
    )


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit("usage: python tools/check_wheel.py WHEEL...")
    for wheel in argv:
        check(Path(wheel))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
