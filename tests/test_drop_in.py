"""clasp_rs.query_patches: every input form gives the canonical call's query, and the result
says everything about it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clasp_rs
from clasp_rs import ClaspPE, Patch, identical_patches, query_patches
from clasp_rs.strategies import STRATEGIES, get_strategy
from generators import label_volumes, smooth_probabilities

PATCH = (2, 4, 4)


def exact_probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float64 probabilities ``shape = (..., C, Z, Y, X)`` that are multiples of 1/256 summing
    to exactly 1: the same numbers in float16, bfloat16, float32 and float64."""
    c = shape[-4]
    counts = rng.multinomial(256, np.ones(c) / c, size=(*shape[:-4], *shape[-3:]))
    return np.moveaxis(counts, -1, -4) / 256.0


def as_layout(array: np.ndarray, container: str, dtype: str, strided: bool) -> object:
    """``array`` as numpy or torch in ``dtype``, C-contiguous or with gaps in its strides."""
    if strided:  # every other entry of a twice-as-wide buffer, then the same values
        wide = np.repeat(array, 2, axis=-1)
        base: object = wide
    else:
        base = array
    if container == "numpy":
        out = np.asarray(base).astype(dtype)
    else:
        out = torch.from_numpy(np.asarray(base)).to(getattr(torch, dtype))
    return out[..., ::2] if strided else out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    seed=st.integers(0, 2**16),
    b=st.integers(1, 3),
    m=st.sampled_from([None, 1, 2]),
    c=st.integers(2, 3),
    container=st.sampled_from(["numpy", "torch"]),
    dtype=st.sampled_from(["float16", "bfloat16", "float32", "float64"]),
    strided=st.booleans(),
    form=st.sampled_from(["batch", "dict", "list"]),
    n=st.integers(1, 12),
)
def test_every_layout_and_dtype_gives_the_canonical_query(
    seed, b, m, c, container, dtype, strided, form, n
) -> None:
    if container == "numpy" and dtype == "bfloat16":
        container = "torch"  # numpy has no bfloat16
    rng = np.random.default_rng(seed)
    spatial = (4, 6, 7)
    shape = (b, c, *spatial) if m is None else (b, m, c, *spatial)
    probs = exact_probabilities(rng, shape)
    names = [f"case_{i}" for i in range(b)]
    canonical = query_patches(
        {name: probs[i] for i, name in enumerate(names)}, n, PATCH, seed=seed, device="cpu"
    )

    given_probs = as_layout(probs, container, dtype, strided)
    if form == "batch":
        got = query_patches(given_probs, n, PATCH, names=names, seed=seed, device="cpu")
    elif form == "dict":
        volumes = {name: given_probs[i] for i, name in enumerate(names)}
        got = query_patches(volumes, n, PATCH, seed=seed, device="cpu")
    else:
        volumes_list = [given_probs[i] for i in range(b)]
        got = query_patches(volumes_list, n, PATCH, names=names, seed=seed, device="cpu")

    assert identical_patches(got.patches, canonical.patches)
    assert (
        [p.index for p in got] == [p.index for p in canonical] == [names.index(p.file) for p in got]
    )
    assert (got.quotas, got.beta, got.shortfall, got.unfilled) == (
        canonical.quotas,
        canonical.beta,
        canonical.shortfall,
        canonical.unfilled,
    )


def _probabilities(seed: int, n: int = 3, m: int = 2, shape=(8, 24, 24)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [np.stack([smooth_probabilities(rng, shape, 3) for _ in range(m)]) for _ in range(n)]
    )


def test_the_result_is_the_strategy_query_in_best_first_order() -> None:
    probs = _probabilities(0)
    names = ["b", "a", "c"]
    result = query_patches(probs, 10, (4, 8, 8), names=names, loop=1, n_loops=4, seed=3)
    volumes = {name: probs[i] for i, name in enumerate(names)}
    expected = ClaspPE(seed=3, n_loops=4).query_result(volumes, 10, 1, (4, 8, 8))
    strategy_order = [p for ps in result.by_stratum.values() for p in ps]
    assert identical_patches(strategy_order, expected.patches)
    assert list(result.by_stratum) == [1, 2, -1]
    assert all(p.stratum == s for s, ps in result.by_stratum.items() for p in ps)
    assert sorted(result.patches, key=lambda p: (p.file, p.coords)) == sorted(
        expected.patches, key=lambda p: (p.file, p.coords)
    )
    keys = [np.float32(p.key) for p in result]
    assert keys == sorted(keys, reverse=True)
    assert result.names == ("b", "a", "c") and result.n == 10 and result.loop == 1
    assert (result.beta, result.quotas) == (expected.beta, expected.quotas)
    assert result.strategy == "clasp-pe" and len(result) == 10 and result.unfilled == 0
    assert all(isinstance(p, clasp_rs.QueriedPatch) and names[p.index] == p.file for p in result)
    assert result.for_volume("a") == result.for_volume(1) == [p for p in result if p.file == "a"]


def test_default_names_annotated_rounds_and_dict_order() -> None:
    probs = torch.from_numpy(_probabilities(1))
    first = query_patches(probs, 6, (4, 8, 8))
    assert first.names == ("0", "1", "2")
    second = query_patches(probs, 6, (4, 8, 8), loop=1, annotated=first.patches)
    assert not any(p.file == q.file and p.overlaps(q) for p in second for q in first)
    # The dict's order gives the indices, not the query: the query is the same.
    reordered = query_patches({"2": probs[2], "0": probs[0], "1": probs[1]}, 6, (4, 8, 8))
    assert identical_patches(
        sorted(reordered, key=lambda p: (p.file, p.coords)),
        sorted(first, key=lambda p: (p.file, p.coords)),
    )
    assert {p.file: p.index for p in reordered} == {
        name: ["2", "0", "1"].index(name) for name in {p.file for p in reordered}
    }


def test_bfloat16_softmax_outputs_are_renormalised_float32() -> None:
    probs = torch.from_numpy(_probabilities(2)).to(torch.bfloat16)
    upcast = probs.float()
    got = query_patches(probs, 8, (4, 8, 8))
    want = query_patches(upcast / upcast.sum(2, keepdim=True), 8, (4, 8, 8))
    assert identical_patches(got.patches, want.patches)
    noisy = probs.float() * 1.05  # 5 % off: beyond C x eps of bfloat16
    with pytest.raises(clasp_rs.InvalidProbabilitiesError, match="sums off by up to 0.05"):
        query_patches(noisy.to(torch.bfloat16), 8, (4, 8, 8))


def test_logits_give_the_softmax_query() -> None:
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(2, 2, 3, 6, 24, 24)).astype(np.float32))
    got = query_patches(logits, 6, (3, 8, 8), logits=True)
    want = query_patches(torch.softmax(logits, 2), 6, (3, 8, 8))
    assert [(p.file, p.coords, p.stratum) for p in got] == [
        (p.file, p.coords, p.stratum) for p in want
    ]
    assert np.allclose([p.mean for p in got], [p.mean for p in want], rtol=1e-5)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_name_of_the_cli_works(name: str) -> None:
    probs = _probabilities(4, shape=(6, 16, 16))
    names = [f"case_{i}" for i in range(3)]
    volumes = {n: probs[i] for i, n in enumerate(names)}
    strategy = get_strategy(name, seed=5)
    if strategy.needs_labels:
        labels = label_volumes(5, n_cases=3, shape=(6, 16, 16))
        labels = {n: labels[f"case_{i}"] for i, n in enumerate(names)}
        got = query_patches(probs, 5, (3, 4, 4), names=names, strategy=name, seed=5, labels=labels)
        want = strategy.query(volumes, 5, 0, (3, 4, 4), labels=labels)  # type: ignore[call-arg]
        with pytest.raises(ValueError, match="pass labels"):
            query_patches(probs, 5, (3, 4, 4), strategy=name)
    else:
        got = query_patches(probs, 5, (3, 4, 4), names=names, strategy=name, seed=5)
        want = strategy.query(volumes, 5, 0, (3, 4, 4))  # type: ignore[call-arg]
    assert got.strategy == name and len(got) == 5

    def boxes(patches):
        return sorted(patches, key=lambda p: (p.file, p.coords))

    assert identical_patches(boxes(got), boxes(want))


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda p: query_patches(p[None], 2, PATCH), r"7-D shape"),
        (lambda p: query_patches(p[0, 0], 2, PATCH), r"one volume \(C, Z, Y, X\)\? pass"),
        (lambda p: query_patches(p, 2, PATCH, names=["a"]), "names has 1 entries"),
        (lambda p: query_patches({"a": p[0]}, 2, PATCH, names=["a"]), "names is for batch"),
        (lambda p: query_patches(p, 2, PATCH, names=["a", "a.npy", "b"]), "same case"),
        (lambda p: query_patches(p, 2, PATCH, strategy="nope"), "unknown strategy 'nope'"),
        (
            lambda p: query_patches(p, 2, PATCH, annotated=[Patch("9", (0, 0, 0), (1, 1, 1))]),
            "'9' names no volume",
        ),
        (lambda p: query_patches("x", 2, PATCH), "must be a dict"),
        (lambda p: query_patches(p, 2, PATCH, labels=p), "only for the random-fg"),
    ],
)
def test_bad_inputs_are_one_clear_error(call, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        call(_probabilities(6, shape=(4, 8, 8)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_of_any_float_dtype_give_the_cpu_query() -> None:
    probs = torch.from_numpy(_probabilities(7, shape=(16, 48, 48)))
    want = query_patches(probs, 12, (4, 16, 16), device="cpu")
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        on_gpu = probs.to("cuda", dtype)
        reference = probs.to(dtype).float() if dtype in (torch.float16, torch.bfloat16) else None
        if reference is not None:
            reference = reference / reference.sum(2, keepdim=True)
            cpu = query_patches(reference, 12, (4, 16, 16), device="cpu")
        else:
            cpu = want
        got = query_patches(on_gpu, 12, (4, 16, 16), device="cuda")
        assert got.patches == cpu.patches, dtype
        assert np.allclose([p.mean for p in got], [p.mean for p in cpu], rtol=1e-4), dtype
    scores = probs[0, 0, 1].to("cuda")
    assert clasp_rs.select_top_patches(scores, (4, 8, 8), 5) == clasp_rs.select_top_patches(
        probs[0, 0, 1].numpy(), (4, 8, 8), 5
    )
