"""The method registry (``pqstudy.study.methods``): every quantiser kind has a name and a colour, and a run's
method and label are read from its config columns."""

from __future__ import annotations

import pandas as pd
import pytest

from pqstudy.config import MODEL_KINDS
from pqstudy.quantizers import QUANTIZERS
from pqstudy.study.methods import (
    METHODS,
    OTHER_COLOUR,
    method_colour,
    method_label,
    method_of,
    order_methods,
    run_label,
)


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_every_quantizer_kind_has_an_entry(kind):
    assert kind in METHODS, f"quantiser kind {kind!r} has no entry in pqstudy.study.methods.METHODS"


@pytest.mark.parametrize("kind", [k for k in MODEL_KINDS if k != "quantized"])
def test_every_continuous_model_kind_has_an_entry(kind):
    assert METHODS[kind].continuous


def test_labels_and_colours_are_distinct():
    assert len({m.label for m in METHODS.values()}) == len(METHODS)
    assert len({m.colour for m in METHODS.values()}) == len(METHODS)
    assert OTHER_COLOUR not in {m.colour for m in METHODS.values()}


def test_quantiser_colours_are_seaborns_colourblind_palette():
    import seaborn as sns

    palette = sns.color_palette("colorblind", 10)
    for kind, index in {"vq": 0, "pq": 1, "vq-fc": 2, "lc": 3, "vq-ema": 4}.items():
        assert METHODS[kind].colour == tuple(palette[index]), kind


def test_unknown_method_keeps_its_name_and_gets_the_other_colour():
    assert method_label("pq(lc)") == "pq(lc)" and method_colour("pq(lc)") == OTHER_COLOUR
    assert method_label("lc") == "LC" and method_colour("lc") == METHODS["lc"].colour


def test_order_follows_the_registry_then_names():
    assert order_methods(["zz", "pq", "lc", "pq(lc)", "vq", "lc"]) == ["vq", "lc", "pq", "pq(lc)", "zz"]


def _rows(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_method_of_reads_model_then_quantizer_kind():
    df = _rows(**{"model.kind": ["quantized", "ae", "quantized", "quantized", "kl"],
                  "quantizer.kind": ["vq", "vq", "pq", "pq", "lc"],
                  "quantizer.sub_kind": ["vq", "vq", "vq", "lc", "vq"]})
    assert list(method_of(df)) == ["vq", "ae", "pq", "pq(lc)", "kl"]
    assert len(method_of(df.iloc[0:0])) == 0


@pytest.mark.parametrize(("row", "label"), [
    ({"quantizer.kind": "pq", "quantizer.subspaces": 2, "quantizer.codebook_size": 1024, "quantizer.dim": 8,
      "train.seed": 0, "train.steps": 800}, "PQ M=2 K=1,024 D=8 · seed 0 · 800 steps"),
    ({"quantizer.kind": "lc", "quantizer.codebook_size": 100000, "quantizer.dim": 8, "quantizer.low_dim": 16,
      "train.seed": 1, "train.steps": 800}, "LC K=100,000 D=8 D′=16 · seed 1 · 800 steps"),
    ({"quantizer.kind": "vq", "quantizer.codebook_size": 64, "quantizer.dim": 8, "quantizer.low_dim": 16,
      "train.seed": 2}, "VQ K=64 D=8 · seed 2"),
    ({"model.kind": "ae", "quantizer.kind": "vq", "quantizer.dim": 4, "train.steps": 200},
     "AE (continuous) D=4 · 200 steps"),
])
def test_run_label(row, label):
    assert run_label(pd.Series(row)) == label


def test_run_label_of_an_unknown_run_names_its_id():
    assert run_label(None, "abc") == "run abc (not in runs.csv)"


def test_recipe_of_reads_the_papers_loss_weights():
    from pqstudy.study.methods import recipe_of

    df = _rows(**{"model.kind": ["quantized", "quantized", "quantized", "ae"], "quantizer.kind": ["vq"] * 4,
                  "quantizer.beta": [0.25, 0.33, 0.5, 0.25], "loss.codebook_weight": [1.0, 0.1, 1.0, 1.0]})
    assert list(recipe_of(df)) == ["PQGAN", "VQGAN-LC", "", ""]  # neither; a continuous model has no recipe
    assert list(recipe_of(df.drop(columns="quantizer.beta"))) == [""] * 4
    row = pd.Series({"quantizer.kind": "vq", "quantizer.codebook_size": 1024, "quantizer.dim": 8, "train.seed": 0,
                     "quantizer.beta": 0.33, "loss.codebook_weight": 0.1})
    assert run_label(row) == "VQ K=1,024 D=8 · VQGAN-LC recipe · seed 0"
