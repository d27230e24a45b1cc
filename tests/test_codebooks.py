"""Initial codebooks: given tensors are used exactly; built codebooks are content-addressed cached artefacts with
their provenance; files cached before provenance files existed still load; ``pqstudy codebooks build``."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from pqstudy.codebooks import CodebookWarning, build_codebook, cache_path, codebook_file, codebook_for, provenance
from pqstudy.codebooks.build import lc_lookup_dim
from pqstudy.codebooks.cache import CODEBOOK_VERSION, provenance_digest, provenance_path, read_provenance
from pqstudy.codebooks.sources import feature_source
from pqstudy.config import DataConfig, QuantizerConfig, apply_overrides, get_profile
from pqstudy.quantizers import build_quantizer

PHOTOS = DataConfig(name="photos", image_size=32, train_limit=16)

pytestmark = pytest.mark.usefixtures("one_thread", "codebook_cache")  # tests/conftest.py


def lc_q(**kw) -> QuantizerConfig:
    base = dict(kind="lc", codebook_size=32, dim=8, lc_source="pixels", lc_patch=4, lc_init="select", lc_samples=512)
    base.update(kw)
    return QuantizerConfig(**base)


# ---------------------------------------------------------------------------------------------------------------
# a given codebook is used exactly


@pytest.mark.parametrize("kind, sub_kind, m, shape", [
    ("vq", "vq", 1, (16, 8)),
    ("vq-ema", "vq", 1, (16, 8)),
    ("vq-fc", "vq", 1, (16, 4)),  # the D′ = D/2 lookup codebook
    ("lc", "vq", 1, (16, 48)),  # (N, C) features; the projector maps them C → D′
    ("pq", "vq", 2, (2, 16, 4)),  # one (K, D/M) codebook per subspace
    ("pq", "vq-ema", 4, (4, 16, 2)),
    ("pq", "lc", 2, (16, 48)),  # one feature bank shared by the subspaces
])
def test_a_quantiser_built_from_a_given_codebook_uses_exactly_it(kind, sub_kind, m, shape):
    torch.manual_seed(1)
    codebook = torch.randn(*shape)
    q = build_quantizer(QuantizerConfig(kind=kind, sub_kind=sub_kind, subspaces=m, codebook_size=16, dim=8),
                        codebook=codebook)
    subs = list(q.subquantizers) if kind == "pq" else [q]
    for i, sub in enumerate(subs):
        expected = codebook if (kind == "lc" or sub_kind == "lc") else (codebook[i] if kind == "pq" else codebook)
        stored = sub.bank.features if hasattr(sub, "bank") else sub.codebook()
        assert torch.equal(stored, expected)
    codebook.add_(1.0)  # a copy: changing the caller's tensor afterwards changes nothing
    assert not torch.equal(subs[0].bank.features if hasattr(subs[0], "bank") else subs[0].codebook(),
                           codebook if kind in ("lc", "vq", "vq-ema", "vq-fc") else codebook[0])


@pytest.mark.parametrize("kind, shape", [("vq", (16, 7)), ("vq-ema", (15, 8)), ("vq-fc", (16, 8)),
                                         ("pq", (16, 4))])
def test_a_codebook_of_the_wrong_shape_is_an_error(kind, shape):
    q_cfg = QuantizerConfig(kind=kind, codebook_size=16, dim=8, subspaces=2 if kind == "pq" else 1)
    with pytest.raises(ValueError, match=r"\(|shape"):
        build_quantizer(q_cfg, codebook=torch.zeros(*shape))


def test_lc_without_a_codebook_is_a_clear_error():
    with pytest.raises(ValueError, match=r"quantizer.kind='lc'.*pqstudy.codebooks.codebook_for"):
        build_quantizer(lc_q())
    with pytest.raises(ValueError, match="quantizer.codebook_size=32: the given codebook has 10 rows"):
        build_quantizer(lc_q(), codebook=torch.zeros(10, 48))


# ---------------------------------------------------------------------------------------------------------------
# the cached artefact and its provenance


def test_the_cache_file_is_named_by_its_provenance_and_carries_it(codebook_cache):
    q = lc_q()
    codebook = build_codebook(q, PHOTOS, seed=2)
    source = feature_source("pixels", patch=4)
    path = cache_path(q, source, PHOTOS, 2)
    assert path.is_file() and path.parent == codebook_cache
    record = read_provenance(path)
    key = provenance(q, source, PHOTOS, 2, 32)
    assert record["provenance"] == key and record["shape"] == [32, 48] and record["file"] == path.name
    assert key["version"] == CODEBOOK_VERSION and key["seed"] == 2 and key["strategy"] == "select"
    assert key["data"]["name"] == "photos" and key["data"]["train_limit"] == 16 and key["data"]["fingerprint"]
    assert path.name == f"pixels-select-N32-C48-{provenance_digest(key)}.pt"
    stored = torch.load(path, weights_only=True)
    assert torch.equal(stored["codebook"], codebook) and json.loads(stored["meta"]) == key
    # every input changes the name: seed, strategy, data limit, N
    others = {cache_path(q, source, PHOTOS, 3),
              cache_path(lc_q(lc_init="kmeans"), source, PHOTOS, 2),
              cache_path(q, source, DataConfig(name="photos", image_size=32, train_limit=8), 2),
              cache_path(lc_q(codebook_size=64), source, PHOTOS, 2)}
    assert len(others) == 4 and path not in others


def test_a_cached_codebook_is_loaded_not_rebuilt(monkeypatch):
    import pqstudy.codebooks.build as build

    first = build_codebook(lc_q(), PHOTOS, seed=0)
    monkeypatch.setattr(build, "sample_features", lambda *a, **k: pytest.fail("rebuilt a cached codebook"))
    assert torch.equal(build_codebook(lc_q(), PHOTOS, seed=0), first)


def _write_old_style(path, codebook, meta: dict) -> None:
    """A cache file as pqstudy wrote them before provenance files: the tensor and its key inside, nothing beside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"codebook": codebook, "meta": json.dumps(meta, sort_keys=True)}, path)


def test_an_old_cache_file_with_the_same_provenance_still_loads(monkeypatch):
    import pqstudy.codebooks.build as build

    q, source = lc_q(), feature_source("pixels", patch=4)
    path, key = cache_path(q, source, PHOTOS, 0), provenance(q, source, PHOTOS, 0, 32)
    old = torch.randn(32, 48)  # not what a build would give: proves the file is what gets loaded
    _write_old_style(path, old, key)
    monkeypatch.setattr(build, "sample_features", lambda *a, **k: pytest.fail("rebuilt a usable old file"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CodebookWarning)
        assert torch.equal(build_codebook(q, PHOTOS, seed=0), old)
    assert read_provenance(path)["provenance"] == key  # the provenance file is written beside it


@pytest.mark.parametrize("damage", ["corrupt", "other provenance", "wrong shape"])
def test_an_unusable_cache_file_is_rebuilt_with_a_warning_naming_it(damage):
    q, source = lc_q(), feature_source("pixels", patch=4)
    path, key = cache_path(q, source, PHOTOS, 0), provenance(q, source, PHOTOS, 0, 32)
    fresh = build_codebook(q, PHOTOS, seed=0, use_cache=False)
    if damage == "corrupt":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a torch file")
    else:
        meta = {**key, "seed": 99} if damage == "other provenance" else key
        _write_old_style(path, torch.zeros(32 if damage != "wrong shape" else 31, 48), meta)
    with pytest.warns(CodebookWarning, match=path.name):
        rebuilt = build_codebook(q, PHOTOS, seed=0)
    assert torch.equal(rebuilt, fresh)
    assert torch.equal(torch.load(path, weights_only=True)["codebook"], fresh)  # the file now holds the rebuild
    assert read_provenance(path)["provenance"] == key


def test_codebook_for_a_run_config():
    cfg = get_profile("smoke")
    assert codebook_for(cfg) is None and codebook_file(cfg) is None  # vq draws its own codes
    lc = apply_overrides(cfg, {"quantizer.kind": "pq", "quantizer.sub_kind": "lc", "quantizer.subspaces": "2",
                               "quantizer.codebook_size": "32", "quantizer.lc_source": "random",
                               "quantizer.lc_init": "select", "quantizer.lc_samples": "256"})
    assert lc_lookup_dim(lc.quantizer) == 4
    codebook = codebook_for(lc)
    assert codebook.shape == (32, 4)  # random source: C = D′ = D/M
    assert codebook_file(lc).is_file() and torch.equal(torch.load(codebook_file(lc))["codebook"], codebook)


# ---------------------------------------------------------------------------------------------------------------
# pqstudy codebooks build


def test_codebooks_build_cli_on_the_smoke_profile(capsys, codebook_cache):
    from pqstudy.cli import main

    argv = ["codebooks", "build", "--profile", "smoke", "--set", "quantizer.kind=lc", "--set", "data.train_limit=16",
            "--set", "quantizer.codebook_size=32", "--set", "quantizer.lc_samples=512",
            "--set", "quantizer.lc_kmeans_iters=2"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert "building" in captured.err and record["shape"] == [32, 48]
    path = codebook_cache / record["file"]
    assert str(path) == record["path"] and path.is_file() and provenance_path(path).is_file()
    assert record["provenance"]["strategy"] == "kmeans" and record["provenance"]["data"]["train_limit"] == 16
    # the same config again finds it; training uses the very same tensor
    assert main(argv) == 0
    assert "cached already" in capsys.readouterr().err
    cfg = apply_overrides(get_profile("smoke"), {"quantizer.kind": "lc", "data.train_limit": "16",
                                                 "quantizer.codebook_size": "32", "quantizer.lc_samples": "512",
                                                 "quantizer.lc_kmeans_iters": "2"})
    assert torch.equal(codebook_for(cfg), torch.load(path, weights_only=True)["codebook"])


def test_codebooks_build_cli_without_an_lc_codebook_and_with_bad_input(capsys):
    from pqstudy.cli import main

    assert main(["codebooks", "build", "--profile", "smoke"]) == 0
    assert "nothing to build" in capsys.readouterr().err
    assert main(["codebooks", "build", "--set", "quantizer.kind=lc", "--set", "quantizer.lc_source=webcam"]) == 2
    assert "quantizer.lc_source='webcam'" in capsys.readouterr().err
