"""The one home of a method's name, colour and order, for the tables, the verdicts and the figures.

A *method* is what a run compares as: the quantiser kind (``vq``, ``vq-fc``, ``vq-ema``, ``lc``, ``pq``; a PQ with
another sub-quantiser reads ``pq(<sub_kind>)``) or, for the continuous baselines, the model kind (``ae``, ``kl``).
``METHODS`` lists them in the order figures and legends show them; a new quantiser kind adds one entry here
(``tests/test_methods.py`` fails for a kind of ``pqstudy.quantizers.QUANTIZERS`` without one).

The run id's tag (``pqstudy.config.run_id``) is a different thing, kept as it is: it names run files, and changing it
would rename every finished run.
"""

from __future__ import annotations

from dataclasses import dataclass

from pqstudy.recipes import PQGAN, VQGAN_LC
from pqstudy.study.store import numeric


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    """``"#0173b2"`` → (r, g, b) in 0..1, as matplotlib reads it."""
    value = hex_colour.lstrip("#")
    return tuple(int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))


@dataclass(frozen=True)
class Method:
    label: str  # how tables, legends and run labels name it
    colour: tuple[float, float, float]  # seaborn's colour-blind palette for the quantisers, greys for the baselines
    continuous: bool = False  # no codebook: a run label shows D only
    subspaces: bool = False  # product quantiser: a run label shows M
    projected_dim: bool = False  # looks codes up in a projected dim D′: a run label shows it when set


METHODS = {  # in the order figures and legends show them
    "vq": Method("VQ", _rgb("#0173b2")),
    "vq-fc": Method("VQ-FC", _rgb("#029e73"), projected_dim=True),
    "vq-ema": Method("VQ-EMA", _rgb("#cc78bc")),
    "lc": Method("LC", _rgb("#d55e00"), projected_dim=True),
    "pq": Method("PQ", _rgb("#de8f05"), subspaces=True),
    "ae": Method("AE (continuous)", (0.45, 0.45, 0.45), continuous=True),
    "kl": Method("KL-VAE (continuous)", (0.15, 0.15, 0.15), continuous=True),
}
OTHER_COLOUR = (0.6, 0.4, 0.7)  # a method without an entry (e.g. ``pq(lc)``)


def _entry(method: str) -> Method | None:
    """The entry of ``method``; ``pq(<sub>)`` shares the traits (not the name or colour) of ``pq``."""
    return METHODS.get(method.split("(")[0])


def method_label(method: str) -> str:
    entry = METHODS.get(method)
    return entry.label if entry else method


def method_colour(method: str):
    entry = METHODS.get(method)
    return entry.colour if entry else OTHER_COLOUR


def order_methods(methods) -> list[str]:
    """The distinct ``methods`` in ``METHODS`` order, unknown ones last, by name."""
    known = list(METHODS)
    methods = list(dict.fromkeys(methods))
    return sorted(methods, key=lambda m: (known.index(m) if m in known else len(known), m))


def _method(row) -> str:
    model = row.get("model.kind", "quantized")
    if isinstance(model, str) and model != "quantized":
        return model
    kind = str(row.get("quantizer.kind", "?"))
    sub = row.get("quantizer.sub_kind", "vq")
    if kind == "pq" and isinstance(sub, str) and sub != "vq":
        return f"pq({sub})"
    return kind


def method_of(df):
    """The method of each row of a runs DataFrame, as a Series (see the module docstring)."""
    import pandas as pd

    if len(df) == 0:
        return pd.Series([], index=df.index, dtype=object)
    return df.apply(_method, axis=1)


def run_label(row, rid: str | None = None) -> str:
    """A reader's label for one run (a row of the runs DataFrame): method, K, D (and M for PQ, D′ where set), seed
    and training steps, e.g. ``PQ M=2 K=32 D=8 · seed 0 · 800 steps``; the run id only when the row is None."""
    if row is None:
        return f"run {rid} (not in runs.csv)"
    frame = row.to_frame().T
    method = method_of(frame).iloc[0]
    entry = _entry(method) or Method(method, OTHER_COLOUR)

    def num(column):
        value = numeric(frame, column).iloc[0]
        return None if value != value else int(value)

    parts = [method_label(method)]
    dim, k, m, seed, steps = (num(c) for c in ("quantizer.dim", "quantizer.codebook_size", "quantizer.subspaces",
                                               "train.seed", "train.steps"))
    if entry.continuous:
        parts.append(f"D={dim}" if dim else "")
    else:
        if entry.subspaces:
            parts.append(f"M={m}")
        parts += [f"K={k:,}" if k else "K=?", f"D={dim}" if dim else "D=?"]
        low = num("quantizer.low_dim")
        if entry.projected_dim and low:
            parts.append(f"D′={low}")
    text = " ".join(p for p in parts if p)
    recipe = recipe_of(frame).iloc[0]
    extra = [f"{recipe} recipe" if recipe else "", f"seed {seed}" if seed is not None else "",
             f"{steps:,} steps" if steps else ""]
    return " · ".join([text, *[e for e in extra if e]])


# What tells the papers' quantiser recipes (pqstudy.recipes) apart in a run's config: the commitment weight β and the
# codebook-loss weight (PQGAN 0.25 and 1.0, VQGAN-LC 0.33 and 0.1). Their other fields may be swept by a grid.
RECIPE_SIGNATURE = ("quantizer.beta", "loss.codebook_weight")
RECIPES = {"PQGAN": PQGAN, "VQGAN-LC": VQGAN_LC}


def recipe_of(runs):
    """The paper recipe each row of a runs DataFrame was trained with ("PQGAN", "VQGAN-LC"), "" for neither or for
    the continuous baselines (no quantiser loss)."""
    import pandas as pd

    out = pd.Series("", index=runs.index, dtype=object)
    if not all(c in runs.columns for c in RECIPE_SIGNATURE):
        return out
    quantised = ~method_of(runs).map(lambda m: bool((_entry(m) or Method(m, OTHER_COLOUR)).continuous))
    for name, recipe in RECIPES.items():
        match = quantised.copy()
        for column in RECIPE_SIGNATURE:
            match &= (numeric(runs, column) - float(recipe[column])).abs() < 1e-9
        out[match] = name
    return out
