"""The papers' claims, each a pure function of the runs DataFrame (``pqstudy.study.store.runs_dataframe``).

Every verdict is one of ``reproduced``, ``not reproduced`` or ``inconclusive`` and carries its evidence: the numbers
compared, the seeds and the margin used, for every metric the claim is judged on. Nothing about the outcome is fixed
in advance.

- ``registry``: ``@claim(key, paper=, grid=, text=, scope=)`` registers a claim where it is defined; ``CLAIMS``.
- ``compare``: what every claim shares: points over seeds, **the noise rule** (the margin), the sign vote,
  combining metrics, the wording of the evidence.
- ``pqgan``: PQGAN's claims and ours at equal rate; ``lc``: VQGAN-LC's; ``generation``: both papers' claims about
  generators on the tokens and latents. Each claim's thresholds sit beside it, and
  each module's docstring names them.

**Metrics.** Each claim is judged on its primary metric (PSNR, or utilisation for the utilisation claims) and on the
perceptual/reference metrics the papers also report, where the runs have them (LPIPS on every run; rFID and KID on
the comparison-table runs). The verdict is reproduced when the primary metric reproduces it and no other metric
contradicts it beyond its margin; not reproduced when the primary metric contradicts it; inconclusive otherwise
(including metrics that disagree, which the evidence names).

A new claim is one function plus its ``@claim`` in the family's module (a new family: a module imported below), and
its BREAK and BLUR cases in ``tests/test_report.py``.
"""

from __future__ import annotations

# The claims run, and the report lists them, in the order they register: PQGAN's (and ours), then VQGAN-LC's.
from pqstudy.study.verdicts import pqgan  # noqa: F401 - registers its claims

# isort: split
from pqstudy.study.verdicts import lc  # noqa: F401 - registers its claims

# isort: split
from pqstudy.study.verdicts import generation  # noqa: F401 - registers its claims
from pqstudy.study.verdicts.registry import CLAIMS, STATUSES, Claim, Verdict, claim

CLAIM_TEXT = {key: (c.text, c.paper) for key, c in CLAIMS.items()}
SCOPE = {key: c.scope for key, c in CLAIMS.items()}


def all_verdicts(df) -> list[Verdict]:
    """Every claim's verdict, PQGAN's first."""
    return [judge(df) for judge in CLAIMS.values()]


def verdicts_frame(verdicts: list[Verdict]):
    """The verdicts as a DataFrame (paper, claim, status, seeds, evidence, reason) for display."""
    import pandas as pd

    return pd.DataFrame([{"paper": v.paper, "claim": v.claim, "status": v.status, "grid": v.grid, "seeds": v.seeds,
                          "evidence": v.evidence, "reason": v.reason} for v in verdicts])


__all__ = ["CLAIMS", "CLAIM_TEXT", "SCOPE", "STATUSES", "Claim", "Verdict", "all_verdicts", "claim", "verdicts_frame"]
