"""The README's first set-up command runs as written on the bundled example."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from clasp_rs.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_readme_main_job_queries_the_bundled_example(tmp_path, capsys) -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)\n```", readme, re.S)
    assert first_block is not None
    command = first_block.group(1)
    install, _, job = command.partition(" && ")
    assert install == "pip install ."
    argv = shlex.split(job.replace('"$(mktemp -d)', f'"{tmp_path}'))
    assert argv[0] == "clasp-rs"
    assert main(argv[1:]) == 0
    loop_file = json.loads((tmp_path / "loop_001.json").read_text())
    patches = loop_file["patches"]
    assert len(patches) == 12
    assert {p["file"] for p in patches} <= {f"case_{i:03d}.nii.gz" for i in (0, 2, 8, 10)}
    assert loop_file["meta"]["strategy"] == "clasp-pe"


def test_readme_python_examples_run_as_written(monkeypatch, capsys) -> None:
    # The blocks run in order in one namespace, from the repository root (they read
    # examples/): the API tour, the PyTorch loop (ensemble -> query_patches -> crops ->
    # training) and its MONAI DataLoader.
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)\n```", readme, re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {}
    for i, block in enumerate(blocks):
        if "import monai" in block:
            pytest.importorskip("monai", reason="the MONAI block needs clasp-rs[monai]")
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "loop 2: beta 100" in out
    assert "torch.Size([4, 1, 4, 12, 12])" in out
    assert len(namespace["annotated"]) == 12  # type: ignore[arg-type]
