"""Fuzz targets: each draws one malformed (or fine) input and calls the public API with it.

The rule every target checks (:func:`outcome`): the call returns, or raises a
``clasp_rs.ClaspError`` or an ``OSError`` whose message is one non-empty line. Any other
exception (a pyo3 ``PanicException``, ``OverflowError``, ``RecursionError``, a ``KeyError``
...) propagates, and hypothesis reports the input; a crash or a hang ends the batch's
process, which :mod:`batch` runs apart from pytest. Where a call works, cheap invariants of
its result are checked too (patches inside the volume, never overlapping, at most ``n``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fuzz_inputs import (
    arrays,
    json_values,
    loop_file_bytes,
    npy_bytes,
    npz_bytes,
    probabilities,
    rarely,
    triples,
    wild_ints,
    wild_scalars,
)
from hypothesis import strategies as st

import clasp_rs
from clasp_rs import ClaspError, Patch

STATS: Counter[str] = Counter()
"""inputs tried, calls that worked, and errors by class (what the batch reports)."""

WORKDIR = Path(tempfile.gettempdir())
"""Where targets write their files (the batch sets it to its own scratch folder)."""


def outcome(call: Callable[[], Any]) -> Any:
    """Run ``call``: its result, or None when it raised a ClaspError/OSError with a one-line
    message (anything else propagates)."""
    STATS["inputs"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call()
    except (ClaspError, OSError) as error:
        message = str(error)
        assert message.strip(), f"{type(error).__name__} with an empty message"
        assert len(message.splitlines()) == 1, (
            f"{type(error).__name__} of several lines: {message!r}"
        )
        STATS[f"error {type(error).__name__}"] += 1
        if os.environ.get("CLASP_RS_FUZZ_VERBOSE"):
            print(f"{type(error).__name__}: {message[:200]}", file=sys.stderr)
        return None
    STATS["worked"] += 1
    return result


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(dir=WORKDIR))


class Knobs:
    """Which arguments of one input are malformed: none (a clean input, so that calls get
    deep into the engine), exactly one, or each with probability 1/3."""

    def __init__(self, draw: st.DrawFn, names: list[str]) -> None:
        mode = draw(st.sampled_from(["clean", "clean", "one", "one", "many"]))
        if mode == "clean":
            self.wild: set[str] = set()
        elif mode == "one":
            self.wild = {draw(st.sampled_from(names))}
        else:
            self.wild = {n for n in names if rarely(draw, 3)}
        self.draw = draw

    def pick(self, name: str, valid: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> Any:
        return self.draw(wild if name in self.wild else valid)


def _check_patches(patches: list[Patch], shape: tuple[int, ...] | None, n: Any) -> None:
    assert isinstance(patches, list) and all(isinstance(p, Patch) for p in patches)
    if isinstance(n, int):
        assert len(patches) <= n
    by_file: dict[str, list[Patch]] = {}
    for p in patches:
        by_file.setdefault(p.file, []).append(p)
        if shape is not None:
            assert all(e <= s for e, s in zip(p.end, shape[-3:], strict=True)), (p, shape)
    for same in by_file.values():
        for i, a in enumerate(same):
            assert not any(a.overlaps(b) for b in same[i + 1 :]), (a, same)


def _patches(case: Any) -> st.SearchStrategy[Patch]:
    return st.builds(
        Patch,
        st.just(case if isinstance(case, str) else "v"),
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
        st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
    )


def _wild_annotated(case: str) -> st.SearchStrategy[Any]:
    box = st.tuples(*[wild_ints()] * 6)
    return st.one_of(
        st.lists(st.one_of(_patches(case), box, _patches("other")), max_size=3),
        st.lists(st.tuples(*[wild_ints()] * 5), max_size=2),
        wild_scalars(),
    )


def _valid_annotated(case: str) -> st.SearchStrategy[Any]:
    return st.lists(_patches(case), max_size=3)


def _size() -> st.SearchStrategy[Any]:
    return st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))


def _stride() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(1, 3), _size())


def _beta() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.floats(0.1, 100))


def _count() -> st.SearchStrategy[Any]:
    return st.integers(0, 12)


def _seed() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1))


def _float_volume(side: int = 9) -> st.SearchStrategy[np.ndarray]:
    return arrays(ndim=3, max_side=side).filter(lambda a: a.dtype.kind == "f")


def select_top_patches(draw: st.DrawFn) -> None:
    k = Knobs(draw, ["scores", "patch_size", "n", "stride", "annotated", "file", "beta", "seed"])
    scores = k.pick("scores", _float_volume(), arrays())
    patch_size, n = k.pick("patch_size", _size(), triples()), k.pick("n", _count(), wild_scalars())
    kwargs = {
        "stride": k.pick("stride", _stride(), triples()),
        "annotated": k.pick("annotated", _valid_annotated("v"), _wild_annotated("v")),
        "file": k.pick("file", st.sampled_from([None, "v"]), wild_scalars()),
        "beta": k.pick("beta", _beta(), wild_scalars()),
        "seed": k.pick("seed", _seed(), wild_scalars()),
    }
    source: Any = scores
    if rarely(draw, 4):
        path = _scratch() / "scores.npy"
        if rarely(draw, 3):
            path.write_bytes(draw(npy_bytes()))
        elif scores.dtype != object:
            np.save(path, scores, allow_pickle=False)
        source = str(path)
    got = outcome(lambda: clasp_rs.select_top_patches(source, patch_size, n, **kwargs))
    if got is not None and not isinstance(source, str):
        _check_patches(got, scores.shape, n)


def select_across_volumes(draw: st.DrawFn) -> None:
    k = Knobs(draw, ["volumes", "names", "patch_size", "n", "stride", "annotated", "beta"])
    names = k.pick(
        "names",
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.sampled_from(["a.npy", "a", "", "x/y", "two\nlines"]), st.text(max_size=3)),
    )
    volumes: Any = draw(
        st.dictionaries(st.just(names) | st.sampled_from(["a", "b"]), _float_volume(7), max_size=3)
    )
    if "volumes" in k.wild:
        volumes = draw(
            st.one_of(
                st.dictionaries(st.sampled_from(["a", "b"]), arrays(max_side=6), max_size=3),
                wild_scalars(),
                st.lists(arrays(ndim=3, max_side=5), max_size=2),
            )
        )
    patch_size, n = k.pick("patch_size", _size(), triples()), k.pick("n", _count(), wild_scalars())
    kwargs: dict[str, Any] = {
        "stride": k.pick("stride", _stride(), triples()),
        "beta": k.pick("beta", _beta(), wild_scalars()),
        "seed": draw(_seed()),
    }
    if isinstance(volumes, dict) and volumes and draw(st.booleans()):
        case = next(iter(volumes))
        kwargs["annotated"] = {
            case: k.pick("annotated", _valid_annotated(case), _wild_annotated(case))
        }
    got = outcome(lambda: clasp_rs.select_across_volumes(volumes, patch_size, n, **kwargs))
    if got is not None:
        _check_patches(got, None, n)


STRATEGY_NAMES = ["clasp-pe", "clasp-pe", "cla-pe", "clap-pe", "pe", "power-pe", "bald"]
STRATEGY_NAMES += ["power-bald", "softrank-bald", "random"]


def strategy_query(draw: st.DrawFn) -> None:
    k = Knobs(
        draw,
        [
            "volumes",
            "files",
            "strategy",
            "n",
            "loop",
            "patch_size",
            "stride",
            "per_volume",
            "annotated",
        ],
    )
    volumes: Any = draw(
        st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            probabilities(valid="volumes" not in k.wild),
            min_size=1,
            max_size=3,
        )
    )
    if "volumes" in k.wild:
        volumes = draw(
            st.one_of(
                wild_scalars(),
                st.lists(probabilities(), max_size=2),
                st.dictionaries(wild_scalars(), probabilities(), max_size=2),
            )
        )
    if "files" in k.wild and isinstance(volumes, dict) and volumes:
        folder, key = _scratch(), next(iter(volumes))
        if draw(st.booleans()):
            (folder / "v.npy").write_bytes(draw(npy_bytes()))
            volumes[key] = str(folder / "v.npy")
        else:
            (folder / "v.npz").write_bytes(draw(npz_bytes()))
            volumes[key] = str(folder / "v.npz")
    name = draw(st.sampled_from(STRATEGY_NAMES))
    params: dict[str, Any] = {"seed": draw(_seed())}
    if "strategy" in k.wild:
        params["n_loops"] = draw(st.one_of(st.integers(1, 6), wild_scalars()))
        if name == "clasp-pe":
            params["alpha"] = draw(st.one_of(st.floats(0, 1), wild_scalars()))
            params["beta0"] = draw(st.one_of(st.floats(0.5, 5), wild_scalars()))
    n = k.pick("n", _count(), wild_scalars())
    loop = k.pick("loop", st.integers(0, 5), st.one_of(wild_scalars(), st.sampled_from([2**63])))
    patch_size = k.pick("patch_size", _size(), triples())
    kwargs: dict[str, Any] = {"stride": k.pick("stride", _stride(), triples()), "device": "cpu"}
    if draw(st.booleans()):
        kwargs["per_volume"] = k.pick("per_volume", st.integers(1, 5), wild_scalars())
    if isinstance(volumes, dict) and volumes and draw(st.booleans()):
        case = next(iter(volumes))
        kwargs["annotated"] = {
            case: k.pick("annotated", _valid_annotated(case), _wild_annotated(case))
        }

    def call() -> Any:
        strategy = clasp_rs.get_strategy(name, **params)
        return strategy.query(volumes, n, loop, patch_size, **kwargs)

    got = outcome(call)
    if got is not None:
        _check_patches(got, None, n)


def loop_files(draw: st.DrawFn) -> None:
    folder = _scratch()
    path = folder / draw(st.sampled_from(["loop_001.json", "two\nlines.json", "é.json"]))
    path.write_bytes(draw(loop_file_bytes()))
    patches = outcome(lambda: clasp_rs.read_loop_file(path))
    outcome(lambda: clasp_rs.read_loop_meta(path))
    if patches is not None:
        # What was read writes back and reads again as the same boxes.
        again = folder / "again.json"
        assert outcome(lambda: clasp_rs.write_loop_file(again, patches)) is not None
        back = clasp_rs.read_loop_file(again)
        assert [p.box for p in back] == [p.box for p in patches]
        assert [p.file for p in back] == [p.file for p in patches]


def _dataset_json(draw: st.DrawFn, channels: int) -> bytes:
    labels: Any = {"background": 0, **{f"class{k}": k for k in range(1, channels)}}
    if rarely(draw, 8):
        labels = draw(json_values())
    doc: Any = {"labels": labels, "file_ending": ".nii.gz", "channel_names": {"0": "CT"}}
    if rarely(draw, 10):
        doc = draw(json_values())
    import json

    return json.dumps(doc, allow_nan=True).encode()


def export_query(draw: st.DrawFn) -> None:
    """``clasp-rs query``'s library side on a generated export folder: the checks of
    :func:`clasp_rs.query.open_export_query`, then the query itself."""
    from clasp_rs.query import open_export_query, run_export_query

    root = _scratch()
    export = root / "probs"
    folds = draw(st.sampled_from([None, 1, 2]))
    dirs = [export] if folds is None else [export / f"fold_{k}" for k in range(folds)]
    channels = draw(st.integers(2, 4))
    names = st.sampled_from(["case_0", "case_1", "x"])
    cases = draw(st.lists(names, min_size=1, max_size=2, unique=True))
    for folder in dirs:
        folder.mkdir(parents=True)
        if rarely(draw, 8):  # folds that disagree
            cases = draw(st.lists(names, max_size=2, unique=True))
        for case in cases:
            if rarely(draw, 6):
                data = draw(npz_bytes())
            else:
                p = np.random.default_rng(draw(st.integers(0, 99))).random((channels, 3, 4, 4))
                import io

                raw = io.BytesIO()
                np.savez_compressed(raw, probabilities=(p / p.sum(0)).astype(np.float32))
                data = raw.getvalue()
            (folder / f"{case}.npz").write_bytes(data)
    dataset = root / "dataset.json"
    dataset.write_bytes(_dataset_json(draw, channels))
    annotated = []
    if rarely(draw, 4):
        (root / "loop_000.json").write_bytes(draw(loop_file_bytes()))
        annotated.append(str(root / "loop_000.json"))
    name = draw(st.sampled_from(STRATEGY_NAMES))
    k = Knobs(draw, ["n", "loop", "patch_size"])
    n = k.pick("n", _count(), wild_scalars())
    loop = k.pick("loop", st.integers(0, 4), wild_scalars())
    patch_size = k.pick("patch_size", _size(), triples())
    out = root / "loop_001.json"

    def call() -> Any:
        strategy = clasp_rs.get_strategy(name, seed=0)
        query = open_export_query(
            strategy,
            export,
            dataset,
            n=n,
            loop=loop,
            patch_size=patch_size,
            out=out,
            annotated=annotated,
            device="cpu",
        )
        return run_export_query(query, out, device="cpu")

    result = outcome(call)
    if result is not None:
        assert clasp_rs.read_loop_file(out) == result.patches
    leftovers = [e.name for e in root.iterdir() if e.name.startswith(".")]
    assert not leftovers, leftovers


TARGETS: dict[str, Callable[[st.DrawFn], None]] = {
    "select_top_patches": select_top_patches,
    "select_across_volumes": select_across_volumes,
    "strategy_query": strategy_query,
    "loop_files": loop_files,
    "export_query": export_query,
}
"""Name -> target: ``target(draw)`` draws one input with hypothesis and runs it."""

os.environ.setdefault("CLASP_RS_NUM_THREADS", "2")
