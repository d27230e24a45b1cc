"""A claim is a function of its grid's runs, registered where it is defined::

    @claim("pq-beats-vq", paper="PQGAN", grid="pq-vs-vq-dim", text="PQ reconstructs better than VQ ...",
           scope="what this scale can and cannot show")
    def pq_beats_vq(runs, c: Claim) -> Verdict: ...

``CLAIMS[key](df)`` selects the ok runs of the claim's grid from the runs DataFrame; without any it returns the
inconclusive "no ok runs in grid <grid>" verdict, else it calls the function with those runs. Claims run (and the
report lists them) in the order they are registered: the families' modules in ``__init__``, then definition order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pqstudy.study.store import grid_runs

STATUSES = ("reproduced", "not reproduced", "inconclusive")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = STATUSES


@dataclass(frozen=True)
class Verdict:
    claim: str
    paper: str
    status: str
    evidence: str
    numbers: dict = field(default_factory=dict)
    key: str = ""
    grid: str = ""
    seeds: str = ""  # the seeds of the compared points, e.g. "3 seeds per point"
    reason: str = ""  # measured context: why a claim is (not) reproduced at this scale
    scope: str = ""  # what this scale can and cannot show about the claim

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: expected one of {STATUSES}")


@dataclass(frozen=True)
class Claim:
    key: str
    paper: str  # whose claim: "PQGAN", "VQGAN-LC", or "neither (ours)"
    grid: str  # the grid whose runs judge it
    text: str  # the claim as the report states it
    scope: str  # what the default profile's scale can and cannot show about it
    judge: Callable  # (the grid's ok runs, this Claim) → Verdict

    def __call__(self, df) -> Verdict:
        runs = grid_runs(df, self.grid)
        if runs is None or len(runs) == 0:
            return self.no_data(f"no ok runs in grid {self.grid}")
        return self.judge(runs, self)

    def no_data(self, what: str) -> Verdict:
        return self.verdict(INCONCLUSIVE, f"no data: {what}", {})

    def verdict(self, status: str, evidence: str, numbers: dict, seeds: str = "", reason: str = "") -> Verdict:
        return Verdict(self.text, self.paper, status, evidence, numbers, self.key, self.grid, seeds, reason,
                       self.scope)


CLAIMS: dict[str, Claim] = {}


def claim(key: str, *, paper: str, grid: str, text: str, scope: str):
    """Register the decorated ``judge(runs, c) → Verdict`` as claim ``key`` (see the module docstring)."""

    def register(judge: Callable) -> Callable:
        if key in CLAIMS:
            raise ValueError(f"claim {key!r}: registered twice ({CLAIMS[key].judge.__module__} and "
                             f"{judge.__module__})")
        CLAIMS[key] = Claim(key, paper, grid, text, scope, judge)
        return judge

    return register
