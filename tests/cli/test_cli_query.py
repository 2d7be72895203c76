"""``clasp-rs query`` and ``clasp-rs merge`` end to end on real ``.npz`` exports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from clasp_rs import ClaspPE, read_loop_file, read_loop_meta, write_loop_file
from clasp_rs.cli import main
from generators import smooth_probabilities, write_dataset, write_export


@pytest.fixture()
def setup(tmp_path):
    probs = tmp_path / "probs"
    sources = write_export(probs)
    dataset = write_dataset(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    return probs, dataset, out, sources


def query_args(probs, dataset, out_file, *extra, n=9, loop=1, patch=("3", "4", "4")):
    return [
        "query",
        str(probs),
        "--dataset-json",
        str(dataset),
        "--n",
        str(n),
        "--loop",
        str(loop),
        "--patch-size",
        *patch,
        "--out",
        str(out_file),
        "--device",
        "cpu",
        *extra,
    ]


def test_query_end_to_end_matches_the_python_api(setup, capsys):
    probs, dataset, out, sources = setup
    assert main(query_args(probs, dataset, out / "loop_002.json", "--seed", "7")) == 0
    captured = capsys.readouterr()
    assert "liver" in captured.err and "time per stage" in captured.err
    assert "beta: 3.16228" in captured.err
    patches = read_loop_file(out / "loop_002.json")
    meta = read_loop_meta(out / "loop_002.json")
    api = ClaspPE(seed=7).query(sources, 9, 1, (3, 4, 4), device="cpu")
    assert [(p.file, p.coords, p.size, p.stratum) for p in patches] == [
        (p.file + ".nii.gz", p.coords, p.size, p.stratum) for p in api
    ]
    assert [p.score for p in patches] == pytest.approx([p.score for p in api], rel=1e-12)
    assert meta["strategy"] == "clasp-pe" and meta["seed"] == 7 and meta["loop"] == 1
    assert meta["n_loops"] == 5 and meta["beta"] == pytest.approx(10**0.5)
    assert meta["patch_size"] == [3, 4, 4] and meta["stride"] == [1, 1, 1]
    # floor(0.66 * 9) = 5 foreground patches over 2 classes, the remainder drawn by the seed.
    quotas = ClaspPE(seed=7).quotas(9, 2, 1)
    assert meta["shortfall"] == 0 and meta["quotas"] == {str(s): q for s, q in quotas.items()}
    assert quotas[-1] == 4 and sorted([quotas[1], quotas[2]]) == [2, 3]
    assert "version" in meta
    # Nothing but the loop file is left in the output folder (the maps were temporary).
    assert os.listdir(out) == ["loop_002.json"]


def test_single_averaged_folder_and_annotated(tmp_path):
    probs = tmp_path / "probs"
    write_export(probs, n_cases=3, folds=0)
    dataset = write_dataset(tmp_path)
    first = tmp_path / "loop_001.json"
    assert main(query_args(probs, dataset, first, n=6)) == 0
    second = tmp_path / "loop_002.json"
    assert main(query_args(probs, dataset, second, "--annotated", str(first), n=6, loop=2)) == 0
    old, new = read_loop_file(first), read_loop_file(second)
    assert len(new) == 6
    assert not any(a.file == b.file and a.overlaps(b) for a in old for b in new)


@pytest.mark.parametrize("num_parts", [2, 3])
def test_shards_merged_equal_one_run_byte_for_byte(setup, num_parts):
    probs, dataset, out, _ = setup
    extra = ("--per-volume", "2", "--seed", "3")
    assert main(query_args(probs, dataset, out / "single.json", *extra)) == 0
    parts = []
    for i in range(num_parts):
        part = out / f"part{i}.json"
        shard = ("--num-parts", str(num_parts), "--part-id", str(i))
        assert main(query_args(probs, dataset, part, *extra, *shard)) == 0
        parts.append(str(part))
    assert main(["merge", *parts[::-1], "--out", str(out / "merged.json")]) == 0
    single = (out / "single.json").read_text()
    merged = (out / "merged.json").read_text()
    assert json.loads(merged)["patches"] == json.loads(single)["patches"]
    assert merged == single


def test_shards_with_shortfall_and_release_merge_exactly(tmp_path):
    # Tiny volumes, one candidate each: class patches are cut in the merge and the stratum -1
    # fill takes their place, which the merge recomputes from the parts' kept maps.
    probs = tmp_path / "probs"
    write_export(probs, n_cases=4, folds=2, shapes=[(4, 4, 4)] * 4, seed=5)
    dataset = write_dataset(tmp_path)
    extra = ("--per-volume", "1", "--strategy", "cla-pe")
    args = dict(n=3, patch=("4", "4", "4"))
    assert main(query_args(probs, dataset, tmp_path / "single.json", *extra, **args)) == 0
    assert read_loop_meta(tmp_path / "single.json")["shortfall"] > 0
    work = tmp_path / "work"
    for i in range(2):
        shard = ("--num-parts", "2", "--part-id", str(i), "--workdir", str(work))
        assert (
            main(query_args(probs, dataset, tmp_path / f"p{i}.json", *extra, *shard, **args)) == 0
        )
    merged = tmp_path / "merged.json"
    assert (
        main(["merge", str(tmp_path / "p0.json"), str(tmp_path / "p1.json"), "--out", str(merged)])
        == 0
    )
    assert merged.read_text() == (tmp_path / "single.json").read_text()


@pytest.mark.parametrize(
    "strategy",
    ["cla-pe", "clap-pe", "pe", "power-pe", "bald", "power-bald", "softrank-bald", "random"],
)
def test_every_cli_strategy_runs(setup, strategy):
    probs, dataset, out, _ = setup
    assert (
        main(query_args(probs, dataset, out / "q.json", "--strategy", strategy, "--stride", "2"))
        == 0
    )
    patches = read_loop_file(out / "q.json")
    assert len(patches) == 9
    assert read_loop_meta(out / "q.json")["strategy"] == strategy
    assert all(p.file.endswith(".nii.gz") for p in patches)


# -- bad input: a clear error, nothing written -------------------------------------------------


def fails(capsys, argv, match, folder: Path):
    before = sorted(os.listdir(folder))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("clasp-rs: error: ")
    assert match in err, err
    assert sorted(os.listdir(folder)) == before


def test_refuses_to_overwrite_out(setup, capsys):
    probs, dataset, out, _ = setup
    target = out / "loop_001.json"
    target.write_text("keep me")
    fails(capsys, query_args(probs, dataset, target), "already exists", out)
    assert target.read_text() == "keep me"
    fails(capsys, ["merge", str(target), "--out", str(target)], "already exists", out)


def test_bad_options(setup, capsys):
    probs, dataset, out, _ = setup
    o = out / "q.json"
    fails(
        capsys, query_args(probs, dataset, o, "--strategy", "nope"), "unknown strategy 'nope'", out
    )
    fails(
        capsys,
        query_args(probs, dataset, o, patch=("3", "4")),
        "--patch-size takes 3 integers",
        out,
    )
    fails(capsys, query_args(probs, dataset, o, "--stride", "1", "2"), "--stride takes 1 or 3", out)
    fails(
        capsys,
        query_args(probs, dataset, o, "--num-parts", "2", "--part-id", "2"),
        "--part-id",
        out,
    )
    fails(capsys, query_args(probs, dataset, o, "--strategy", "random-fg33"), "ground-truth", out)
    fails(
        capsys,
        query_args(probs, dataset, o, "--strategy", "softrank-bald", "--num-parts", "2"),
        "cannot be split",
        out,
    )
    fails(capsys, query_args(probs, dataset, o, n=-1), "n (number of patches)", out)
    fails(capsys, query_args(probs, dataset, o, "--device", "tpu"), "device", out)


def test_missing_devices_end_in_one_line(setup, capsys):
    torch = pytest.importorskip("torch")
    probs, dataset, out, _ = setup
    o = out / "q.json"
    if not torch.cuda.is_available():
        fails(capsys, query_args(probs, dataset, o, "--device", "cuda"), "no CUDA device", out)
    if not torch.backends.mps.is_available():
        fails(capsys, query_args(probs, dataset, o, "--device", "mps"), "no MPS device", out)


def test_dataset_json_problems(setup, capsys, tmp_path):
    probs, _, out, _ = setup
    o = out / "q.json"
    no_labels = tmp_path / "d1"
    no_labels.mkdir()
    path = no_labels / "dataset.json"
    path.write_text(json.dumps({"file_ending": ".nii.gz"}))
    fails(capsys, query_args(probs, path, o), 'no "labels"', out)
    wrong = write_dataset(no_labels, labels={"background": 0, "liver": 1})
    fails(
        capsys, query_args(probs, wrong, o), "3 probability channels, but dataset.json lists 2", out
    )
    path.write_text(json.dumps({"labels": {"background": 0, "a": [1, 2]}}))
    fails(capsys, query_args(probs, path, o), "region-based", out)
    fails(capsys, query_args(probs, tmp_path / "nope.json", o), "dataset.json not found", out)


def test_loop_file_naming_unknown_cases(setup, capsys):
    probs, dataset, out, _ = setup
    loop = out / "loop_000.json"
    from clasp_rs import Patch

    write_loop_file(loop, [Patch("case_999.nii.gz", (0, 0, 0), (2, 2, 2))])
    fails(
        capsys,
        query_args(probs, dataset, out / "q.json", "--annotated", str(loop)),
        "case_999",
        out,
    )


def test_fold_case_and_shape_mismatch(tmp_path, capsys):
    dataset = write_dataset(tmp_path)
    probs = tmp_path / "probs"
    write_export(probs, n_cases=3)
    (probs / "fold_1" / "case_001.npz").unlink()
    rng = np.random.default_rng(0)
    np.savez_compressed(
        probs / "fold_1" / "case_777.npz", probabilities=smooth_probabilities(rng, (4, 4, 4))
    )
    fails(
        capsys,
        query_args(probs, dataset, tmp_path / "q.json"),
        "fold_1 lacks case_001 and has extra case_777",
        tmp_path,
    )

    probs2 = tmp_path / "probs2"
    write_export(probs2, n_cases=2)
    np.savez_compressed(
        probs2 / "fold_1" / "case_000.npz", probabilities=smooth_probabilities(rng, (5, 5, 5))
    )
    fails(
        capsys,
        query_args(probs2, dataset, tmp_path / "q.json"),
        "case 'case_000': shape (3, 5, 5, 5) in fold_1",
        tmp_path,
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    fails(capsys, query_args(empty, dataset, tmp_path / "q.json"), "no <case>.npz", tmp_path)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: p.__setitem__((0, 0, 0, 0), -0.5), "negative"),
        (lambda p: p.__setitem__((1, 2, 2, 2), np.nan), "NaN"),
        (lambda p: p.__imul__(1.5), "channel sums"),
    ],
)
def test_probabilities_that_are_not_a_distribution(tmp_path, capsys, damage, match):
    dataset = write_dataset(tmp_path)
    probs = tmp_path / "probs"
    write_export(probs, n_cases=3)
    path = probs / "fold_1" / "case_002.npz"
    p = np.load(path)["probabilities"]
    damage(p)
    np.savez_compressed(path, probabilities=p)
    work = tmp_path / "work"
    work.mkdir()
    fails(
        capsys,
        query_args(probs, dataset, tmp_path / "q.json", "--workdir", str(work)),
        match,
        tmp_path,
    )
    assert os.listdir(work) == []  # the maps of the cases before the bad one were removed


def test_bald_needs_fold_folders(tmp_path, capsys):
    dataset = write_dataset(tmp_path)
    probs = tmp_path / "probs"
    write_export(probs, n_cases=2, folds=0)
    fails(
        capsys,
        query_args(probs, dataset, tmp_path / "q.json", "--strategy", "bald"),
        "fold_0/",
        tmp_path,
    )


def test_merge_rejects_parts_of_different_queries(setup, capsys):
    probs, dataset, out, _ = setup
    shard = ("--num-parts", "2", "--part-id")
    assert main(query_args(probs, dataset, out / "a0.json", *shard, "0", "--seed", "1")) == 0
    assert main(query_args(probs, dataset, out / "a1.json", *shard, "1", "--seed", "2")) == 0
    fails(
        capsys,
        ["merge", str(out / "a0.json"), str(out / "a1.json"), "--out", str(out / "m.json")],
        "strategy differ",
        out,
    )
    fails(capsys, ["merge", str(out / "a0.json"), "--out", str(out / "m.json")], "missing [1]", out)
