"""One call from any PyTorch / MONAI active-learning loop: :func:`query_patches`.

It takes what such a loop has at hand — the softmax outputs (or logits) of an ensemble or of
MC-dropout passes, as a batch tensor or a dict of per-volume arrays, on the CPU or a GPU, in
any float dtype — and returns a :class:`PatchQuery`: the patches to annotate, best first,
each naming its volume and batch index, with the query's quotas, beta and shortfall. It is
the same query as :meth:`ClaspPE.query <clasp_rs.strategies.Strategy.query>` (and as
``clasp-rs query``) on the same probabilities.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clasp_rs._messages import shown
from clasp_rs.annotated import match_annotated, volume_ids
from clasp_rs.arrays import is_tensor, layout_hint, probabilities_for_maps
from clasp_rs.exceptions import InvalidArgumentError, InvalidProbabilitiesError, InvalidScoresError
from clasp_rs.patches import Patch, case_id

__all__ = ["PatchQuery", "QueriedPatch", "query_patches"]


@dataclass(frozen=True, eq=False)
class QueriedPatch(Patch):
    """A :class:`~clasp_rs.Patch` of a :func:`query_patches` result.

    ``file`` is the volume's name (a key of the dict, or ``names[index]`` of a batch);
    ``index`` is its position in the batch (or in the dict's order), so that
    ``patch.crop(images[patch.index])`` crops the batch's image. ``mean`` is the patch's box
    mean of the map that selected it, ``key`` its ranking value, ``score`` the strategy's
    documented score (``ln(box mean)``, plus noise under power sampling). Equality and
    hashing are a Patch's: ``(case, coords, size)``.
    """

    index: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class PatchQuery:
    """The answer of :func:`query_patches`.

    Attributes:
        patches: every queried patch, best first: by ranking key (``key``, rounded to
            float32 as the engine ranks), highest first; ties keep the sorted volume-name
            order, then the strategy's order. Strata are mixed here.
        by_stratum: stratum -> its patches in the strategy's order (best first within the
            stratum), for the strata that took patches: foreground class labels ascending,
            ``-1`` (plain entropy) last; one entry ``None`` for strategies that do not
            stratify.
        names: the volume names in batch (or dict) order; ``names[p.index] == p.file``.
        strategy: the strategy's name (``"clasp-pe"``, ...).
        loop: the loop the query was made after.
        n: patches asked for.
        beta: the power-sampling exponent used, or None.
        quotas: stratum -> its share of ``n`` (stratified strategies), else None.
        shortfall: how many patches the strata fell short of their quotas (ClaSP PE); the
            stratum -1 fill tops up what it can of them.
        unfilled: ``n - len(patches)``: patches no valid candidate was left for (every
            candidate overlaps something annotated or taken). 0 unless the pool is
            exhausted; a short query is never silent.
    """

    patches: tuple[QueriedPatch, ...]
    by_stratum: dict[int | None, tuple[QueriedPatch, ...]]
    names: tuple[str, ...]
    strategy: str
    loop: int
    n: int
    beta: float | None
    quotas: dict[int, int] | None
    shortfall: int
    unfilled: int

    def __len__(self) -> int:
        return len(self.patches)

    def __iter__(self) -> Iterator[QueriedPatch]:
        return iter(self.patches)

    def for_volume(self, volume: str | int) -> list[QueriedPatch]:
        """The patches of one volume, by name or batch index, best first."""
        if isinstance(volume, (int, np.integer)) and not isinstance(volume, bool):
            return [p for p in self.patches if p.index == int(volume)]
        return [p for p in self.patches if p.file == volume]


def _names(count: int, names: Sequence[str] | None, what: str) -> list[str]:
    if names is None:
        return [str(i) for i in range(count)]
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise InvalidScoresError(f"names must be a sequence of {count} strings, got {shown(names)}")
    if len(names) != count:
        raise InvalidScoresError(
            f"names has {len(names)} entries but the {what} has {count} volumes on axis 0"
        )
    return [str(n) if isinstance(n, os.PathLike) else n for n in names]


def _split_volumes(
    probabilities: Any, names: Sequence[str] | None
) -> tuple[list[str], list[Any], int]:
    """``(names, per-volume values, axis offset)`` of any accepted input form."""
    if isinstance(probabilities, Mapping):
        if names is not None:
            raise InvalidScoresError(
                "names is for batch inputs; a dict names its volumes by its keys"
            )
        keys = list(probabilities)
        return keys, [probabilities[k] for k in keys], 0
    if isinstance(probabilities, np.ndarray) or is_tensor(probabilities):
        shape = tuple(int(s) for s in probabilities.shape)
        if len(shape) not in (5, 6):
            single = (
                "; one volume (C, Z, Y, X)? pass {name: p} or p[None] (a batch of one)"
                if len(shape) == 4
                else ""
            )
            raise InvalidProbabilitiesError(
                f"a batch of probabilities must be (B, C, Z, Y, X), or (B, M, C, Z, Y, X) for "
                f"M ensemble members or MC-dropout passes, got {len(shape)}-D shape {shape}"
                + single
            )
        count = shape[0]
        return _names(count, names, "batch"), [probabilities[b] for b in range(count)], 1
    if isinstance(probabilities, Sequence) and not isinstance(probabilities, (str, bytes)):
        items = list(probabilities)
        return _names(len(items), names, "list"), items, 0
    raise InvalidProbabilitiesError(
        "probabilities must be a dict name -> (M, C, Z, Y, X) / (C, Z, Y, X), a batch array or "
        "tensor (B, C, Z, Y, X) / (B, M, C, Z, Y, X), or a list of per-volume arrays; got "
        f"{type(probabilities).__name__}"
    )


def _labels_array(value: Any, name: str) -> np.ndarray:
    if is_tensor(value):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    return array


def _split_labels(labels: Any, names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(labels, Mapping):
        by_id = volume_ids(names)
        out = {}
        for key in labels:
            target = by_id.get(case_id(key))
            if target is None:
                raise InvalidScoresError(f"labels key {key!r} names no volume of the query")
            out[target] = _labels_array(labels[key], target)
        missing = sorted(set(names) - set(out))
        if missing:
            raise InvalidScoresError(f"labels lack the volume(s) {missing}")
        return out
    if isinstance(labels, (np.ndarray, Sequence)) or is_tensor(labels):
        if len(labels) != len(names):
            raise InvalidScoresError(
                f"labels hold {len(labels)} volumes, the probabilities {len(names)}"
            )
        return {name: _labels_array(labels[i], name) for i, name in enumerate(names)}
    raise InvalidScoresError(
        "labels must be a dict name -> (Z, Y, X) or a batch (B, [1,] Z, Y, X), got "
        f"{type(labels).__name__}"
    )


def query_patches(
    probabilities: Any,
    n: int,
    patch_size: Sequence[int],
    *,
    loop: int = 0,
    n_loops: int = 5,
    strategy: str = "clasp-pe",
    names: Sequence[str] | None = None,
    annotated: Mapping[str, Iterable[Any]] | Iterable[Patch] | None = None,
    seed: int = 0,
    stride: int | Sequence[int] = 1,
    per_volume: int | None = None,
    logits: bool = False,
    labels: Any = None,
    device: str = "auto",
) -> PatchQuery:
    """Query the next ``n`` patches to annotate from an ensemble's class probabilities.

    Args:
        probabilities: the softmax outputs of M ensemble members or MC-dropout passes (or
            their mean), channel 0 the background, in one of these forms:

            * a batch array or tensor ``(B, C, Z, Y, X)`` (a mean per volume) or
              ``(B, M, C, Z, Y, X)``, with the volumes named by ``names``;
            * a dict name -> ``(M, C, Z, Y, X)`` or ``(C, Z, Y, X)`` (volumes may differ in
              shape), also ``.npy`` / nnU-Net ``.npz`` paths or lists of per-member arrays;
            * a list of such per-volume values, named by ``names``.

            numpy arrays or torch tensors on any device (the maps are computed there with
            ``device="auto"``), float16, bfloat16, float32 or float64, any strides.
            float16 / bfloat16 probabilities are upcast to float32, checked to sum to 1 over
            C within C x their machine epsilon, and renormalised; float32 / float64 must
            sum to 1 within 1e-3.
        n: patches wanted in total.
        patch_size: ``(dz, dy, dx)`` in voxels; clipped to each volume.
        loop: the training loop after which the query is made (0 after the starting
            budget); sets ClaSP PE's beta on its schedule.
        n_loops: loops of the beta schedule.
        strategy: a ``clasp-rs query`` strategy name: ``clasp-pe``, ``cla-pe``, ``clap-pe``,
            ``pe``, ``power-pe``, ``bald``, ``power-bald``, ``softrank-bald`` (these three
            need M >= 2), ``random``, and with ``labels`` the simulation baselines
            ``random-fg33`` / ``random-fg66``.
        names: volume names of a batch or list (default ``"0"``, ``"1"``, ...); they name
            the patches (``Patch.file``) and key the noise, so keep them stable across loops.
        annotated: patches already annotated, never overlapped: a dict name -> patches, or
            a flat list of ``Patch`` whose ``file`` names the volume (e.g. the
            ``patches`` of earlier results). Names match through ``case_id``; one that names
            no volume is an error.
        seed: seed of every random draw (same inputs and seed, same query).
        stride: candidate grid step, one integer or ``(sz, sy, sx)``.
        per_volume: ``m`` of the per-volume caps (default ``n``).
        logits: the inputs are logits; softmax over C is applied per member.
        labels: ground-truth labels ``(Z, Y, X)`` per volume (dict or batch
            ``(B, [1,] Z, Y, X)``), only for ``random-fg33`` / ``random-fg66``.
        device: where the uncertainty maps are computed: ``"auto"``, ``"cpu"``, ``"cuda"``.

    Returns:
        A :class:`PatchQuery`; ``len(result) == n`` unless no valid candidate is left, when
        ``result.unfilled`` says how many are missing.

    Raises:
        InvalidProbabilitiesError: a layout, dtype or value problem (the message names the
            volume and, for a misplaced class axis, the axis and what was expected).
        InvalidPatchError: bad ``n``, ``patch_size``, ``stride`` or annotated patches, or an
            annotated name that names no volume.
        InvalidScoresError: ``names`` of the wrong length, or two names of one case.
        ValueError: unknown strategy, bad ``loop`` / ``per_volume``.

    Example:
        >>> probs = torch.softmax(torch.stack([m(x) for m in ensemble], 1), 2)  # doctest: +SKIP
        >>> result = clasp_rs.query_patches(probs, 8, (16, 32, 32), names=ids)  # doctest: +SKIP
        >>> crops = [p.crop(images[p.index]) for p in result]  # doctest: +SKIP
    """
    from clasp_rs.strategies import Strategy, get_strategy

    volume_names, values, offset = _split_volumes(probabilities, names)
    volume_ids(volume_names)
    prepared = {}
    for name, value in zip(volume_names, values, strict=True):
        if not logits:
            # Cheap (a sample of voxels), and names the axes as the caller's array has them.
            hint = layout_hint(value, offset=offset)
            if hint:
                raise InvalidProbabilitiesError(f"volume {name!r}: {hint}")
        prepared[name] = probabilities_for_maps(
            value, f"volume {name!r}", logits=logits, offset=offset
        )
    chosen = get_strategy(strategy, seed=seed, n_loops=n_loops)
    if isinstance(chosen, Strategy):
        if labels is not None:
            raise InvalidArgumentError(
                f"labels are only for the random-fg strategies, not {strategy!r}"
            )
        result = chosen.query_result(
            prepared,
            n,
            loop,
            patch_size,
            stride=stride,
            per_volume=per_volume,
            annotated=annotated,
            logits=logits,
            device=device,
        )
    else:
        from clasp_rs.strategies import QueryRequest

        if labels is None:
            raise InvalidArgumentError(
                f"strategy {strategy!r} simulates annotation from the ground truth: pass labels"
            )
        request = QueryRequest.build(
            n,
            loop,
            patch_size,
            stride=stride,
            per_volume=per_volume,
            annotated=match_annotated(annotated, volume_names),
        )
        result = chosen.query_labels(_split_labels(labels, volume_names), request)
    return _patch_query(result, volume_names, chosen.name, loop, n)


def _patch_query(result: Any, names: list[str], strategy: str, loop: int, n: int) -> PatchQuery:
    index = {name: i for i, name in enumerate(names)}
    queried = [
        QueriedPatch(
            p.file,
            p.coords,
            p.size,
            p.score,
            p.stratum,
            mean=p.mean,
            key=p.key,
            index=index[p.file],
        )
        for p in result.patches
    ]
    by_stratum: dict[int | None, list[QueriedPatch]] = {}
    for p in queried:
        by_stratum.setdefault(p.stratum, []).append(p)
    rank = {name: i for i, name in enumerate(sorted(names))}
    with np.errstate(over="ignore"):  # a float64 key beyond float32 ranks as +-inf
        keys = np.array(
            [-np.inf if p.key is None else p.key for p in queried], dtype=np.float64
        ).astype(np.float32)
    order = sorted(range(len(queried)), key=lambda i: (-keys[i], rank[queried[i].file], i))
    return PatchQuery(
        patches=tuple(queried[i] for i in order),
        by_stratum={s: tuple(ps) for s, ps in by_stratum.items()},
        names=tuple(names),
        strategy=strategy,
        loop=loop,
        n=n,
        beta=result.beta,
        quotas=None if result.quotas is None else dict(result.quotas),
        shortfall=int(result.shortfall),
        unfilled=int(result.unfilled),
    )
