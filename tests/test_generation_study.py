"""Generation runs in the study: the notebook, the runner's phases, the table, the figures and the verdicts."""

from __future__ import annotations

import ast

import nbformat
import pandas as pd
import pytest

from pqstudy.config import get_profile
from pqstudy.generation.config import GenConfig, GenRunConfig
from pqstudy.study.generation_notebook import (
    GEN_NOTEBOOK,
    build_notebook,
    gen_config_from_namespace,
    gen_parameter_names,
)
from pqstudy.study.notebook import NOTEBOOK_KERNELSPEC
from pqstudy.study.verdicts import CLAIMS


def _parameters(nb):
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def test_committed_notebook_is_the_generated_one_without_outputs():
    nb = nbformat.read(str(GEN_NOTEBOOK), as_version=4)
    generated = build_notebook()
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in nb.cells] == [
        (c.cell_type, c.source, c.metadata.get("tags")) for c in generated.cells]
    assert nb.metadata["kernelspec"] == NOTEBOOK_KERNELSPEC
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")


def test_the_parameters_cell_mirrors_gen_config():
    cell = _parameters(build_notebook())
    names = [t.id for node in ast.parse(cell.source).body for t in node.targets]
    assert names[: len(gen_parameter_names())] == gen_parameter_names()
    shown: dict = {}
    exec(cell.source, shown)  # noqa: S102 - the generated cell: assignments only
    tokenizer = get_profile("smoke")
    cfg = gen_config_from_namespace({**shown, "tokenizer_config": tokenizer.to_dict()})
    assert cfg == GenRunConfig(tokenizer, GenConfig())
    with pytest.raises(ValueError, match="tokenizer_dir"):
        gen_config_from_namespace(shown)


def test_the_runner_finishes_tokenizers_before_generators(monkeypatch):
    """A grid may list a generator before its tokenizer; with several notebooks at once the runner still runs every
    tokenizer of the call (phase 0) before any generator (phase 1), which needs the tokenizer's checkpoint."""
    from pqstudy.study import runner

    phases = []
    monkeypatch.setattr(runner, "_execute_phase",
                        lambda todo, jobs, tally: phases.append([job["run_id"] for _, job in todo]))
    tok = get_profile("smoke")
    gen = GenRunConfig(tok, GenConfig(size="tiny"))
    todo = [(1, {"run_id": gen.run_id, "phase": 1}), (2, {"run_id": tok.run_id, "phase": 0})]
    runner._execute_all(todo, jobs=2, tally=None)
    assert phases == [[tok.run_id], [gen.run_id]]
    assert runner.RUN_KINDS[GenRunConfig].directories(gen, runner.Path("/r")) == {
        "run_dir": f"/r/{gen.run_id}", "tokenizer_dir": f"/r/{tok.run_id}"}


def _gen_row(rid, method, k, fd, real=0.41, kind="ar", head="factorised", ch_mult="(1, 2, 2)", flops=1e9,
             **extra):
    quant = "pq" if method == "pq" else method
    return {"gen.seed": 0, "run_id": rid, "grids": f"gen-{'ar' if kind == 'ar' else 'diffusion'}", "status": "ok",
            "profile": "default", "model.kind": "quantized", "model.ch_mult": ch_mult, "quantizer.kind": quant,
            "quantizer.codebook_size": k, "quantizer.dim": 8, "quantizer.subspaces": 4 if quant == "pq" else 1,
            "quantizer.sub_kind": "vq", "data.image_size": 32, "train.seed": 0, "train.steps": 800,
            "gen.kind": kind, "gen.head": head, "gen.latent": "quantized", "gen.steps": 1000,
            "tokenizer_run_id": f"tok-{rid}", "fd_classifier": fd, "real_fd_classifier": real,
            "generate_flops_per_sample": flops, **extra}


def _lc_rows(lc, fc, ema, seeds=(0, 1), spread=0.2):
    """Generator rows at K = 16,384 for LC, VQ-FC and VQ-EMA with FDs ``lc``, ``fc``, ``ema`` (mean over ``seeds``,
    ±``spread`` about it), and one LC run at K = 1,024."""
    rows = [_gen_row("d", "lc", 1024, 99.0)]
    for i, seed in enumerate(seeds):
        off = 0.0 if len(seeds) == 1 else spread * (1 if i % 2 else -1)
        rows += [_gen_row(f"a{seed}", "lc", 16384, lc + off, **{"gen.seed": seed}),
                 _gen_row(f"b{seed}", "vq-fc", 16384, fc + off, **{"gen.seed": seed}),
                 _gen_row(f"c{seed}", "vq-ema", 16384, ema + off, **{"gen.seed": seed})]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("fds", "status"), [
    ((10.0, 14.0, 13.0), "reproduced"),  # LC below both beyond the margin
    ((16.0, 14.0, 13.0), "not reproduced"),  # LC above both beyond the margin
    ((10.0, 10.5, 14.0), "inconclusive"),  # within the margin of VQ-FC
])
def test_lc_generation_verdict(fds, status):
    verdict = CLAIMS["lc-generation"](_lc_rows(*fds))
    assert verdict.status == status and "K=16,384" in verdict.evidence
    assert verdict.seeds == "generator seeds per point: 2/2/2"
    assert verdict.numbers["margin"] > verdict.numbers["sampling_floor"]  # the seed spread, ±0.2, is the wider


def test_a_generation_verdict_from_one_seed_is_inconclusive_and_says_what_it_reads():
    verdict = CLAIMS["lc-generation"](_lc_rows(16.0, 14.0, 13.0, seeds=(0,)))
    assert verdict.status == "inconclusive" and verdict.numbers["margin"] is None
    assert "this reads not reproduced" in verdict.evidence and "gen.seed=1" in verdict.evidence
    assert "1/1/1" in verdict.seeds
    # the seed spread can undo what the sampling floor alone reads: LC 0.5 above VQ-FC (floor 0.41), spread ±1
    wide = CLAIMS["lc-generation"](_lc_rows(14.5, 14.0, 14.2, spread=1.0))
    assert wide.status == "inconclusive" and wide.numbers["margin"] > 0.5


def test_two_configurations_at_one_point_are_not_seeds():
    rows = _lc_rows(10.0, 14.0, 13.0, seeds=(0,))
    twin = rows[rows["run_id"] == "a0"].assign(run_id="a0-other-d")  # same method and K, same gen.seed
    verdict = CLAIMS["lc-generation"](pd.concat([rows, twin], ignore_index=True))
    assert verdict.status == "inconclusive" and "one gen.seed" in verdict.evidence


@pytest.mark.parametrize(("fine", "coarse", "cost", "status"), [
    (10.0, 11.0, 0.3e9, "reproduced"),  # close (bound 10 + 0.41 + 0.1 · 9.59 = 11.37), a quarter of the FLOPs
    (10.0, 20.0, 0.3e9, "not reproduced"),  # far worse
    (10.0, 11.0, 0.9e9, "inconclusive"),  # close but not cheaper
    (33.4, 31.1, 0.3e9, "reproduced"),  # the study's outcome: the coarser is better
    (33.4, 38.0, 0.3e9, "not reproduced"),  # 4.6 worse: beyond 33.4 + 0.41 + 0.1 · 32.99 = 37.11 (25% allowed 41.75)
])
def test_pq_diffusion_coarse_verdict(fine, coarse, cost, status):
    rows = []
    for seed, off in ((0, -0.1), (1, 0.1)):
        rows += [_gen_row(f"f{seed}", "pq", 256, fine + off, kind="diffusion", flops=1e9, **{"gen.seed": seed}),
                 _gen_row(f"c{seed}", "pq", 256, coarse + off, kind="diffusion", ch_mult="(1, 2, 2, 2)", flops=cost,
                          **{"gen.seed": seed})]
    df = pd.DataFrame([*rows, _gen_row("v", "vq", 1024, 5.0, kind="diffusion")])
    verdict = CLAIMS["pq-diffusion-coarse"](df)
    assert verdict.status == status
    assert verdict.numbers["close_bound"] == pytest.approx(fine + 0.41 + 0.1 * (fine - 0.41))
    one = CLAIMS["pq-diffusion-coarse"](df[df["run_id"].isin(["f0", "c0", "v"])])
    assert one.status == "inconclusive" and f"this reads {status}" in one.evidence


@pytest.mark.parametrize(("accuracy", "status"), [
    (0.30, "reproduced"),  # far above chance
    (0.13, "reproduced"),  # above 0.1 + 3 · sqrt(0.09 / 1,000) = 0.1285 (2 seeds × 500 samples)
    (0.12, "inconclusive"),  # within 3 standard errors of chance
    (0.10, "inconclusive"),  # chance
])
def test_generation_verdicts_need_recognisable_samples(accuracy, status):
    def rows(**acc):
        return pd.DataFrame([{**r, "data.name": "cifar10", "samples": 500, "recon_class_accuracy": 0.25,
                              "real_class_accuracy": 0.88, "class_accuracy": acc.get(r["run_id"][0], accuracy)}
                             for r in _lc_rows(10.0, 14.0, 13.0).to_dict("records")])

    verdict = CLAIMS["lc-generation"](rows())
    assert verdict.status == status
    assert f"LC {100 * accuracy:.1f}% / 25.0% / 88.0%" in verdict.evidence
    assert verdict.numbers["recognisable_above"]["lc"] == pytest.approx(0.1 + 3 * (0.09 / 1000) ** 0.5)
    if status == "inconclusive":
        assert "the FDs read reproduced, but the classifier cannot tell the samples of LC" in verdict.evidence
    # one compared generator at chance is enough: VQ-EMA's (run ids c*) samples
    assert CLAIMS["lc-generation"](rows(c=0.1)).status == "inconclusive"
    # unlabelled or unknown data: the gate is not applied, and the evidence says so
    unknown = rows().assign(**{"data.name": "folder:mine"})
    assert CLAIMS["lc-generation"](unknown).status == "reproduced"
    assert "class accuracy of the samples not judged" in CLAIMS["lc-generation"](unknown).evidence


def test_generation_verdicts_without_runs_are_inconclusive():
    empty = pd.DataFrame([_gen_row("a", "lc", 16384, 10.0)])
    assert CLAIMS["lc-generation"](empty).status == "inconclusive"
    assert CLAIMS["pq-diffusion-coarse"](empty).status == "inconclusive"
    # a gen grid that lists only its tokenizers so far (a study in progress): no gen.* columns at all
    tokenizers = pd.DataFrame([{"run_id": "vq-1", "grids": "rate-matched;gen-ar;gen-diffusion", "status": "ok",
                                "quantizer.kind": "vq", "model.kind": "quantized", "psnr": 20.0}])
    for key in ("lc-generation", "pq-diffusion-coarse"):
        verdict = CLAIMS[key](tokenizers)
        assert verdict.status == "inconclusive" and verdict.evidence.startswith("no data"), verdict.evidence


def test_generation_figures_draw_from_rows():
    from pqstudy.figures import FIGURES

    df = pd.DataFrame([_gen_row("f", "pq", 256, 10.0, kind="diffusion", recon_fd_classifier=4.0),
                       _gen_row("a", "vq", 1024, 12.0, tokenizer_bits_per_image=640.0, recon_fd_classifier=5.0)])
    for name in ("generation_fd_vs_rate", "generation_fd_vs_cost"):
        fig = FIGURES[name].make(None, df)
        assert len(fig.axes[0].collections) >= 2


def test_lc_generation_not_reproduced_names_its_measured_reason():
    """The reason reads the priors' NLL and the reconstructions' FD from the rows; without them it says only what
    scored worse."""
    rows = _lc_rows(16.0, 14.0, 15.5)
    bare = CLAIMS["lc-generation"](rows)
    assert bare.status == "not reproduced" and bare.reason == "LC's samples score worse than VQ-FC's"
    nll = {"lc": 750.0, "vq-fc": 170.0, "vq-ema": 430.0, "d": 0.0}
    recon = {"lc": 22.0, "vq-fc": 27.0, "vq-ema": 25.0, "d": 0.0}
    rows = rows.assign(nll_bits_per_image=rows["quantizer.kind"].map(nll),
                       recon_fd_classifier=rows["quantizer.kind"].map(recon))
    verdict = CLAIMS["lc-generation"](rows)
    assert "LC 750, VQ-FC 170, VQ-EMA 430 bits per image" in verdict.reason
    assert "LC 22.00, VQ-FC 27.00, VQ-EMA 25.00" in verdict.reason and verdict.reason.endswith("limits the samples")
    assert "margin" in verdict.evidence and "s = 0.28 pooled" in verdict.evidence  # sd of ±0.2


def test_generation_figures_pool_a_generator_s_seeds_into_one_point():
    from pqstudy.figures import FIGURES
    from pqstudy.figures.generation import _per_config

    df = _lc_rows(16.0, 14.0, 15.0, seeds=(0, 1, 2), spread=0.5)  # 3 configs × 3 seeds, and one single-seed run
    df["tokenizer_run_id"] = "tok-" + df["quantizer.kind"] + "-" + df["quantizer.codebook_size"].astype(str)
    pooled = _per_config(df.assign(_method=df["quantizer.kind"]), ("fd_classifier",)).set_index("quantizer.kind")
    assert len(pooled) == 4 and pooled.loc["vq-fc", "_seeds"] == 3 and pooled.loc["lc", "_seeds"].tolist() == [1, 3]
    lc = pooled[pooled["quantizer.codebook_size"] == 16384].loc["lc"]
    assert lc["fd_classifier_lo"] == pytest.approx(15.5) and lc["fd_classifier_hi"] == pytest.approx(16.5)
    fig = FIGURES["generation_fd_vs_cost"].make(None, df)
    assert "mean over 1–3 generator seeds" in fig.axes[0].get_title()
    points = sum(len(c.get_offsets()) for c in fig.axes[0].collections if c.get_offsets().shape[1] == 2
                 and type(c).__name__ == "PathCollection")
    assert points == 4  # one marker per configuration, not per run


def test_generation_table_lists_each_generator_s_seeds_together():
    from pqstudy.study.tables import generation_table

    df = _lc_rows(16.0, 14.0, 15.0, seeds=(2, 0, 1)).assign(generate_seconds_per_sample=0.05)
    table, notes = generation_table(df, "gen-ar")
    assert list(table.columns[:4]) == ["run", "generator", "tokenizer", "gen. seed"]
    at_large = table[table["tokenizer"].str.contains("16,384")]
    for _, rows in at_large.groupby("tokenizer", sort=False):
        assert rows["gen. seed"].tolist() == ["0", "1", "2"]  # a generator's seeds in order, one block
    blocks = at_large["tokenizer"].tolist()
    assert blocks == sorted(blocks)
    assert any(n.startswith("gen ms/sample: wall time") for n in notes)
