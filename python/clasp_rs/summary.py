"""The console summaries of queries (rich tables on stderr), shared by ``clasp-rs query``,
``clasp-rs merge`` and the loop's query step: patches per case and stratum, beta, quotas,
shortfall and the time per stage, and a progress bar over the cases whose maps are computed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clasp_rs.patches import Patch
from clasp_rs.strata import stratum_label
from clasp_rs.strategies.types import QueryResult

__all__ = ["MapsProgressBar", "print_summary"]


def _stratum_name(stratum: int | None, names: Mapping[int, str]) -> str:
    if stratum is None:
        return "patches"
    return stratum_label(stratum, names)


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


class MapsProgressBar:
    """A rich progress bar over the cases whose maps are computed (only on a terminal)."""

    def __init__(self, console: Console, total: int) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[case]}"),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = self.bar.add_task("maps", total=total, case="")

    def __enter__(self) -> MapsProgressBar:
        self.bar.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.bar.__exit__(kind, error, traceback)

    def begin(self, case: str) -> None:
        self.bar.update(self.task, case=case)

    def end(self, case: str) -> None:
        self.bar.advance(self.task)
