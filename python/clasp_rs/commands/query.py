"""``clasp-rs query``: query patches from nnU-Net probability exports with a strategy.

Everything that can be checked cheaply is checked before any map is computed: options, the
dataset.json labels, the export folder (same cases and shapes in every fold, channel count),
the loop files of ``--annotated`` (every patch names a known case), and that ``--out`` does
not exist. Probabilities are checked to be a distribution as each case is read; on any error
nothing is written and the maps this run wrote are removed.

With ``--num-parts K --part-id i`` only every K-th case (sorted order, starting at i) is
processed and ``--out`` receives a part file; ``clasp-rs merge`` turns the K parts into the
loop file a single run would have written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clasp_rs import __version__
from clasp_rs.commands import add_stride_option, parse_stride, parse_triple
from clasp_rs.exceptions import InvalidProbabilitiesError, LoopFileError
from clasp_rs.patches import Patch, case_id, read_loop_file, write_loop_file
from clasp_rs.probabilities import discover_probabilities, read_dataset_json
from clasp_rs.selection import as_stride
from clasp_rs.strategies import STRATEGIES, get_strategy
from clasp_rs.strategies.base import QueryRequest, QueryResult, ScoreSet, Strategy
from clasp_rs.strategies.partial import Part, annotated_digest, write_part

__all__ = ["add_parser", "build_meta", "check_out", "compute_maps", "print_summary", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``query`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "query",
        help="query patches to annotate from nnU-Net probability exports",
        description=(
            "Query N patches to annotate next from nnU-Net probability exports: a folder of "
            "<case>.npz (key 'probabilities', (C, Z, Y, X)) or of fold_K/ sub-folders of them."
        ),
    )
    parser.add_argument("probabilities", metavar="PROB_DIR", help="probability export folder")
    parser.add_argument(
        "--dataset-json", required=True, metavar="FILE", help="the nnU-Net dataset.json"
    )
    parser.add_argument(
        "--strategy",
        default="clasp-pe",
        metavar="NAME",
        help=f"query strategy (default clasp-pe): {', '.join(STRATEGIES)}",
    )
    parser.add_argument("--n", type=int, required=True, help="number of patches to query")
    parser.add_argument(
        "--loop", type=int, required=True, help="training loop the query follows (0, 1, ...)"
    )
    parser.add_argument(
        "--n-loops", type=int, default=5, help="AL loops of the beta schedule (default 5)"
    )
    parser.add_argument(
        "--patch-size",
        nargs="+",
        type=int,
        required=True,
        metavar="N",
        help="patch size Z Y X in voxels (clipped to each volume)",
    )
    add_stride_option(parser)
    parser.add_argument(
        "--per-volume",
        type=int,
        default=None,
        metavar="M",
        help="m of the per-volume caps (default: --n)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    parser.add_argument(
        "--annotated",
        nargs="+",
        default=[],
        metavar="LOOP_JSON",
        help="loop files of patches already annotated (never overlapped)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="loop file to write (a part file with --num-parts); never overwritten",
    )
    parser.add_argument(
        "--device", default="auto", help="where maps are computed: auto, cpu or cuda"
    )
    parser.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="folder for the memory-mapped score maps (kept); default: a temporary folder",
    )
    parser.add_argument(
        "--num-parts", type=int, default=1, metavar="K", help="split the cases into K parts"
    )
    parser.add_argument(
        "--part-id", type=int, default=0, metavar="I", help="the part to process (0 .. K-1)"
    )
    return parser


class _Stages:
    """Wall time per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def build_meta(strategy: Strategy, request: QueryRequest, result: QueryResult) -> dict[str, Any]:
    """The ``meta`` block of a query's loop file (the same for a single run and a merge)."""
    params = strategy.params()
    return {
        "strategy": strategy.name,
        "params": {k: v for k, v in params.items() if k != "strategy"},
        "seed": strategy.seed,
        "loop": request.loop,
        "n_loops": strategy.n_loops,
        "beta": result.beta,
        "n": request.n,
        "patch_size": list(request.patch_size),
        "stride": list(request.stride),
        "per_volume": request.per_volume,
        "quotas": None
        if result.quotas is None
        else {str(s): q for s, q in sorted(result.quotas.items())},
        "shortfall": result.shortfall,
        "unfilled": result.unfilled,
        "version": __version__,
    }


def _stratum_name(stratum: int | None, names: Mapping[int, str]) -> str:
    if stratum is None:
        return "patches"
    if stratum == -1:
        return "-1 (u)"
    return f"{stratum} ({names[stratum]})" if stratum in names else str(stratum)


def print_summary(
    console: Console,
    title: str,
    patches: Sequence[Patch],
    result: QueryResult | None,
    stages: Mapping[str, float],
    label_names: Mapping[int, str],
    n_cases: int,
) -> None:
    """Patches per case and stratum, beta, shortfall and time per stage."""
    strata = sorted({p.stratum for p in patches}, key=lambda s: (s is None, s == -1, s or 0))
    counts: dict[str, Counter[int | None]] = defaultdict(Counter)
    for p in patches:
        counts[p.file][p.stratum] += 1
    table = Table(title=title)
    table.add_column("case")
    for s in strata:
        table.add_column(_stratum_name(s, label_names), justify="right")
    table.add_column("total", justify="right")
    for file in sorted(counts):
        row = counts[file]
        table.add_row(file, *(str(row[s]) for s in strata), str(sum(row.values())))
    totals: Counter[int | None] = Counter(p.stratum for p in patches)
    table.add_row("all", *(str(totals[s]) for s in strata), str(len(patches)), style="bold")
    console.print(table)
    if n_cases > len(counts):
        console.print(f"{n_cases - len(counts)} of {n_cases} case(s) got no patch")
    if result is not None:
        beta = "none (box mean)" if result.beta is None else f"{result.beta:.6g}"
        console.print(f"beta: {beta}")
        if result.quotas is not None:
            quotas = ", ".join(
                f"{_stratum_name(s, label_names)}: {q}"
                for s, q in sorted(result.quotas.items(), key=lambda kv: (kv[0] == -1, kv[0]))
            )
            console.print(f"quotas: {quotas}")
        if result.shortfall:
            console.print(
                f"shortfall: {result.shortfall} patch(es) filled from stratum -1 because "
                "strata could not fill their quotas"
            )
        if result.unfilled:
            console.print(f"only {len(patches)} patches fit: no valid candidates left")
    if stages:
        timing = Table(title="time per stage")
        timing.add_column("stage")
        timing.add_column("seconds", justify="right")
        for name, seconds in stages.items():
            timing.add_row(name, f"{seconds:.2f}")
        timing.add_row("total", f"{sum(stages.values()):.2f}", style="bold")
        console.print(timing)


def check_out(path: str) -> Path:
    out = Path(path)
    if os.path.lexists(out):
        raise FileExistsError(17, "output file already exists; it is never overwritten", str(out))
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "folder of the output file does not exist", str(out.parent))
    return out


def _read_annotated(loop_files: Sequence[str], cases: Sequence[str]) -> dict[str, list[Patch]]:
    known = set(cases)
    annotated: dict[str, list[Patch]] = defaultdict(list)
    for loop_file in loop_files:
        unknown: set[str] = set()
        for patch in read_loop_file(loop_file):
            case = case_id(patch.file)
            if case not in known:
                unknown.add(case)
            annotated[case].append(patch)
        if unknown:
            names = sorted(unknown)
            raise LoopFileError(
                f"loop file {loop_file} names {len(names)} case(s) that are not in the "
                f"probability folder: {', '.join(names[:8])}" + (" ..." if len(names) > 8 else "")
            )
    return dict(annotated)


def run(args: argparse.Namespace) -> int:
    """Validate everything cheap, compute the maps, select, write, summarise."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    stages = _Stages()

    # -- cheap checks, before any long work ----------------------------------------------------
    strategy = get_strategy(args.strategy, seed=args.seed, n_loops=args.n_loops)
    patch_size = parse_triple(args.patch_size, "--patch-size", allow_one=False)
    stride = as_stride(parse_stride(args.stride))
    if args.num_parts < 1 or not 0 <= args.part_id < args.num_parts:
        raise ValueError(
            f"--part-id must be in 0 .. --num-parts - 1 with --num-parts >= 1, got part "
            f"{args.part_id} of {args.num_parts}"
        )
    sharded = args.num_parts > 1
    if strategy.needs_labels:
        raise ValueError(
            f"strategy {strategy.name} centres patches on ground-truth foreground voxels and "
            "needs the labels (simulation only): use it from the nnU-Net loop "
            "(clasp-rs run --simulate) or clasp_rs.strategies"
        )
    if sharded and not strategy.shardable:
        raise ValueError(f"strategy {strategy.name} cannot be split into parts (--num-parts)")
    out = check_out(args.out)
    dataset = read_dataset_json(args.dataset_json)
    export = discover_probabilities(args.probabilities, n_classes=dataset.n_classes)
    if strategy.needs_folds and export.n_folds < 2:
        raise InvalidProbabilitiesError(
            f"strategy {strategy.name} needs the probabilities of each fold (fold_0/, fold_1/, "
            f"...) in {export.root}, found {export.n_folds} fold(s)"
        )
    annotated = _read_annotated(args.annotated, export.cases)
    files = {case: dataset.file_of(case) for case in export.cases}
    request = QueryRequest.build(
        args.n,
        args.loop,
        patch_size,
        stride=stride,
        per_volume=args.per_volume,
        annotated=annotated,
        files=files,
    )
    strategy.check_loop(request.loop)
    if strategy.needs & {"classes", "entropy", "mutual_information"}:
        from clasp_rs.uncertainty import resolve_device

        resolve_device(args.device)
    cases = list(export.cases[args.part_id :: args.num_parts])
    label_names = {v: k for k, v in dataset.labels.items()}

    # -- maps --------------------------------------------------------------------------------
    own_workdir = args.workdir is None
    # Absolute paths: a part file records the entropy maps' paths for the merge.
    if args.workdir is not None:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    elif sharded:
        workdir = Path(f"{out}.maps").resolve()
        workdir.mkdir(exist_ok=False)
    else:
        workdir = Path(tempfile.mkdtemp(prefix=".clasp_rs_maps_", dir=out.parent)).resolve()
    written: list[str] = []
    keep_maps = not own_workdir
    try:
        scores: dict[str, ScoreSet] = {}
        with stages.stage("read + maps"):
            scores = compute_maps(strategy, export, cases, args.device, workdir, console, written)
        if sharded:
            with stages.stage("select"):
                local = strategy.select_local(scores, request, partial=True)
            keep_maps = keep_maps or any(sel.fill_map for sel in local.values())
            if own_workdir:
                # Only the entropy maps a recorded fill may need stay for the merge.
                needed = {sel.fill_map for sel in local.values() if sel.fill_map}
                for path in written:
                    if path not in needed:
                        Path(path).unlink(missing_ok=True)
            part = Part(
                strategy=strategy.params(),
                request=_part_request(request, cases),
                num_parts=args.num_parts,
                part_id=args.part_id,
                all_cases=list(export.cases),
                digest=annotated_digest(request.annotated),
                local=local,
                meta={"labels": {str(v): k for k, v in dataset.labels.items()}},
            )
            with stages.stage("write"):
                write_part(out, part)
            console.print(
                f"wrote part {args.part_id} of {args.num_parts} ({len(cases)} case(s)) to {out}"
                + (f"; keep {workdir} until the merge" if keep_maps and sharded else "")
            )
            if not keep_maps:
                shutil.rmtree(workdir, ignore_errors=True)
            patches = [
                Patch(request.file(c), t[:3], t[3:6], stratum=s if s != 0 else None)
                for c, sel in local.items()
                for s, ts in sel.strata.items()
                for t in ts
            ]
            print_summary(
                console,
                f"clasp-rs query {strategy.name}: part {args.part_id} (taken per volume)",
                patches,
                None,
                stages.seconds,
                label_names,
                len(cases),
            )
            return 0

        if strategy.shardable:
            with stages.stage("select"):
                local = strategy.select_local(scores, request, partial=False)
            with stages.stage("merge + fill"):
                result = strategy.combine(local, request, strategy.fill_provider(scores, request))
        else:
            with stages.stage("select"):
                result = strategy.query_scores(scores, request)
        with stages.stage("write"):
            write_loop_file(out, result.patches, meta=build_meta(strategy, request, result))
    except BaseException:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for path in written:
                Path(path).unlink(missing_ok=True)
        raise
    if own_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    print_summary(
        console,
        f"clasp-rs query {strategy.name}: {len(result.patches)} of {request.n} patches",
        result.patches,
        result,
        stages.seconds,
        label_names,
        len(cases),
    )
    console.print(f"wrote {out}")
    return 0


def _part_request(request: QueryRequest, cases: Sequence[str]) -> QueryRequest:
    """The request restricted to a part's cases (annotated boxes and file names)."""
    return QueryRequest(
        n=request.n,
        loop=request.loop,
        patch_size=request.patch_size,
        stride=request.stride,
        per_volume=request.per_volume,
        annotated={c: tuple(request.boxes(c)) for c in cases if request.boxes(c)},
        files={c: request.file(c) for c in cases},
    )


def compute_maps(
    strategy: Strategy,
    export: Any,
    cases: Sequence[str],
    device: str,
    workdir: Path,
    console: Console,
    written: list[str],
) -> dict[str, ScoreSet]:
    """Score maps of ``cases`` into ``workdir`` with a progress bar over cases; the paths
    written are appended to ``written`` (so a failed run can remove them)."""
    from clasp_rs.strategies.scores import score_set_for_case

    scores: dict[str, ScoreSet] = {}
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[case]}"),
        console=console,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task("maps", total=len(cases), case="")
        for case in cases:
            progress.update(task, case=case)
            if not strategy.needs & {"classes", "entropy", "mutual_information"}:
                _, z, y, x = export.shapes[case]
                scores[case] = ScoreSet((z, y, x))
            else:
                s = score_set_for_case(
                    case, export.sources(case), strategy.needs, device=device, workdir=workdir
                )
                written.extend(
                    str(p)
                    for p in (*s.classes, s.entropy, s.mutual_information)
                    if isinstance(p, str)
                )
                scores[case] = s
            progress.advance(task)
    return scores
