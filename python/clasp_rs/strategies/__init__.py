"""Query strategies: ClaSP PE and its baselines, by the names the CLI uses.

=================  ====================================================================
name               strategy
=================  ====================================================================
``clasp-pe``       :class:`ClaspPE`: class-stratified power sampling of entropy (DESIGN)
``cla-pe``         :class:`ClaPE`: ClaSP PE without noise
``clap-pe``        :class:`ClapPE`: ClaSP PE with constant beta = 1
``pe``             :class:`PE`: top-k box means of the predictive entropy
``power-pe``       :class:`PowerPE`: power sampling (beta = 1) of the entropy
``bald``           :class:`BALD`: top-k box means of the mutual information
``power-bald``     :class:`PowerBALD`: power sampling (beta = 1) of the mutual information
``softrank-bald``  :class:`SoftrankBALD`: sampling by rank^-1 of the mutual information
``random``         :class:`Random`: uniformly random non-overlapping candidates
``random-fg33``    :class:`RandomFG33`: 33 % centred on ground-truth foreground (simulation)
``random-fg66``    :class:`RandomFG66`: 66 % centred on ground-truth foreground (simulation)
=================  ====================================================================

Every random choice is a counter-based draw keyed by (seed, loop, case, stream code,
counter); see :mod:`clasp_rs.strategies.streams`. Modules: :mod:`.types` (the values a query
passes around), :mod:`.base` (the strategy protocol and base classes), :mod:`.clasp`,
:mod:`.baselines`, :mod:`.random_fg` (simulation), :mod:`.budget`, :mod:`.streams`,
:mod:`.fill` (ClaSP PE's shortfall fill), :mod:`.scores` (probabilities to score maps).
"""

from __future__ import annotations

from typing import Any

from clasp_rs.exceptions import InvalidArgumentError
from clasp_rs.strategies.base import QueryStrategy, Strategy
from clasp_rs.strategies.baselines import BALD, PE, PowerBALD, PowerPE, Random, SoftrankBALD
from clasp_rs.strategies.budget import beta_schedule
from clasp_rs.strategies.clasp import ClaPE, ClapPE, ClaspPE
from clasp_rs.strategies.random_fg import RandomFG, RandomFG33, RandomFG66
from clasp_rs.strategies.types import QueryRequest, QueryResult, ScoreSet

__all__ = [
    "BALD",
    "PE",
    "STRATEGIES",
    "ClaPE",
    "ClapPE",
    "ClaspPE",
    "PowerBALD",
    "PowerPE",
    "QueryRequest",
    "QueryResult",
    "QueryStrategy",
    "Random",
    "RandomFG",
    "RandomFG33",
    "RandomFG66",
    "ScoreSet",
    "SoftrankBALD",
    "Strategy",
    "beta_schedule",
    "get_strategy",
]

STRATEGIES: dict[str, type[Strategy] | type[RandomFG]] = {
    cls.name: cls
    for cls in (
        ClaspPE,
        ClaPE,
        ClapPE,
        PE,
        PowerPE,
        BALD,
        PowerBALD,
        SoftrankBALD,
        Random,
        RandomFG33,
        RandomFG66,
    )
}


def get_strategy(name: str, **kwargs: Any) -> Strategy | RandomFG:
    """The strategy registered as ``name`` (a CLI value such as ``"clasp-pe"``).

    Args:
        name: one of :data:`STRATEGIES`.
        **kwargs: constructor arguments (``seed``, ``n_loops``, and for the ClaSP PE family
            ``alpha``, ...).

    Raises:
        ValueError: unknown name, or an argument the strategy does not take.
    """
    cls = STRATEGIES.get(name)
    if cls is None:
        raise InvalidArgumentError(
            f"unknown strategy {name!r}; expected one of: {', '.join(STRATEGIES)}"
        )
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise InvalidArgumentError(f"strategy {name!r}: {err}") from None
