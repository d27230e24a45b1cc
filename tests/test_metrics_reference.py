"""Reference-network metrics: CMMD's kernel maths, LPIPS / rFID+KID / CMMD pipelines with test-only random
backbones, weight files found and loaded from local files only, and missing weights recorded instead of raised.

No test touches the network or needs real pretrained weights.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request

import numpy as np
import pytest
import torch

import pqstudy  # noqa: F401  (torchvision shim before lpips / torch-fidelity / open_clip)
from pqstudy.metrics.cmmd import TINY_TEST_CFG, CmmdAccumulator, load_clip, mmd
from pqstudy.metrics.distribution import FidKidAccumulator, frechet_distance, load_inception, to_uint8
from pqstudy.metrics.perceptual import load_lpips
from pqstudy.metrics.reference import ReferenceMetrics
from pqstudy.metrics.weights import (
    WEIGHTS,
    find_weights,
    format_weights_report,
    network_report,
    weights_report,
)
from pqstudy.offline import NetworkDisabledError, no_network

ENV_OVERRIDES = ("PQSTUDY_LPIPS_ALEX", "PQSTUDY_LPIPS_VGG", "PQSTUDY_INCEPTION_WEIGHTS", "PQSTUDY_CLIP_WEIGHTS")


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Every weight location points into an empty tmp dir, HF_HUB_OFFLINE is set: results don't depend on the host."""
    for var in ENV_OVERRIDES + ("HF_HUB_CACHE", "PQSTUDY_WEIGHTS_DIR", "PQSTUDY_FEATURE_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over TORCH_HOME
    return tmp_path


def _images(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    recon = (real + 0.3 * torch.randn(n, 3, size, size, generator=g)).clamp(-1, 1)
    return real, recon


def _one_line_naming(reason: str | None, *fragments: str) -> None:
    assert reason is not None and "\n" not in reason
    for fragment in fragments:
        assert fragment in reason, (fragment, reason)


# --- mmd: the CMMD kernel maths against an independent numpy reference -----------------------------------------------


def _numpy_cmmd(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    """Written from the paper's definition: pairwise loops, k(a, b) = exp(-||a - b||² / (2σ²)), all pairs averaged."""

    def mean_k(a, b):
        return np.mean([[np.exp(-np.sum((ai - bj) ** 2) / (2 * sigma**2)) for bj in b] for ai in a])

    return scale * (mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y))


def test_mmd_of_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(12, 16))
    assert mmd(x, x) == pytest.approx(0.0, abs=1e-9)
    assert mmd(torch.from_numpy(x).float(), torch.from_numpy(x).float()) == pytest.approx(0.0, abs=1e-9)


def test_mmd_matches_numpy_reference_on_shifted_sets():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 5))
    y = rng.normal(size=(9, 5)) + 3.0  # shifted, and a different set size
    value = mmd(x, y)
    assert isinstance(value, float)
    assert value == pytest.approx(_numpy_cmmd(x, y), rel=1e-10)
    assert mmd(x, y, sigma=2.0, scale=1.0) == pytest.approx(_numpy_cmmd(x, y, 2.0, 1.0), rel=1e-10)
    # torch in (float32, as embeddings arrive) gives the same value up to float32 rounding of the inputs
    assert mmd(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(value, rel=1e-5)


def test_mmd_closed_form_for_a_known_shift():
    # x = n copies of a point, y = the same point shifted by δ: k_xx = k_yy = 1, k_xy = exp(-δ²/(2σ²))
    delta = 10.0
    x = np.zeros((4, 3))
    y = x + np.array([delta, 0.0, 0.0])
    expected = 1000.0 * 2.0 * (1.0 - np.exp(-(delta**2) / (2 * 10.0**2)))  # = 786.93...
    assert mmd(x, y) == pytest.approx(expected, rel=1e-12)
    # two-point sets translated by s: the diagonal terms (k = 1) are part of the estimate
    a, s = np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([6.0, 8.0])
    k = lambda d2: np.exp(-d2 / 200.0)  # noqa: E731
    kxx = (2 * 1.0 + 2 * k(25.0)) / 4
    kxy = (2 * k(100.0) + k(np.sum((a[0] - a[1] - s) ** 2)) + k(np.sum((a[1] - a[0] - s) ** 2))) / 4
    assert mmd(a, a + s) == pytest.approx(1000.0 * (2 * kxx - 2 * kxy), rel=1e-12)


def test_mmd_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same embedding size"):
        mmd(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="embedding matrix"):
        mmd(np.zeros(4), np.zeros((3, 4)))


def test_mmd_is_exported_from_metrics():
    import pqstudy.metrics as metrics

    assert metrics.mmd is mmd and metrics.ReferenceMetrics is ReferenceMetrics
    assert metrics.weights_report is weights_report


# --- the weight table ------------------------------------------------------------------------------------------------


def test_weight_file_names_are_the_libraries_own():
    import open_clip
    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    assert WEIGHTS["lpips_alex"].filename == os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url)
    assert WEIGHTS["lpips_vgg"].filename == os.path.basename(VGG16_Weights.IMAGENET1K_V1.url)
    assert WEIGHTS["inception"].filename == os.path.basename(tfi.URL_INCEPTION_V3)
    cfg = open_clip.get_pretrained_cfg("ViT-L-14-336", "openai")
    assert cfg["quick_gelu"] is True
    assert cfg["hf_hub"].rstrip("/") == WEIGHTS["clip"].url.removeprefix("https://huggingface.co/")
    assert os.path.basename(cfg["url"]) == "ViT-L-14-336px.pt"
    # the LPIPS linear layers ship inside the installed lpips package
    for name in ("lpips_alex_lin", "lpips_vgg_lin"):
        status = find_weights(name)
        assert status.found and status.path.endswith(os.path.join("weights", "v0.1", WEIGHTS[name].filename))


def test_find_weights_looks_in_the_torch_hub_and_hf_caches(empty_caches):
    ckpt = empty_caches / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    status = find_weights("lpips_alex")
    assert status.found and status.path == str(ckpt / "alexnet-owt-7be5be79.pth")
    assert not find_weights("lpips_vgg").found and not find_weights("inception").found

    repo = empty_caches / "hf" / "hub" / "models--timm--vit_large_patch14_clip_336.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    assert not find_weights("clip").found
    (repo / "snapshots" / "abc123" / "open_clip_model.safetensors").write_bytes(b"x")
    assert find_weights("clip").path == str(repo / "snapshots" / "abc123" / "open_clip_model.safetensors")

    with pytest.raises(ValueError, match="unknown weights 'resnet'"):
        find_weights("resnet")


def test_openai_clip_archive_is_found_in_open_clips_cache(empty_caches):
    cache = empty_caches / "home" / ".cache" / "clip"
    cache.mkdir(parents=True)
    (cache / "ViT-L-14-336px.pt").write_bytes(b"x")
    assert find_weights("clip").path == str(cache / "ViT-L-14-336px.pt")


def test_env_override_is_exclusive_and_named_when_wrong(empty_caches, monkeypatch):
    ckpt = empty_caches / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"x")
    monkeypatch.setenv("PQSTUDY_INCEPTION_WEIGHTS", str(empty_caches / "nope.pth"))
    status = find_weights("inception")
    assert not status.found and status.looked_in == [str(empty_caches / "nope.pth")]
    _one_line_naming(status.missing_reason, "PQSTUDY_INCEPTION_WEIGHTS", "nope.pth")
    model, reason = load_inception()
    assert model is None
    _one_line_naming(reason, "PQSTUDY_INCEPTION_WEIGHTS", "weights-inception-2015-12-05-6726825d.pth")


def test_weights_report_lists_every_network_and_how_to_provide_it(empty_caches):
    statuses = weights_report()
    assert [s.name for s in statuses] == list(WEIGHTS)
    by_name = {s.name: s for s in statuses}
    assert by_name["lpips_alex_lin"].found and not by_name["lpips_alex"].found
    rows = network_report()
    assert [r["network"] for r in rows] == ["inception", "lpips-alex", "lpips-vgg", "clip"]
    assert all(r["status"] == "missing" and r["path"] is None and r["reason"] for r in rows)
    text = format_weights_report(rows)
    for fragment in ("MISSING", "alexnet-owt-7be5be79.pth", "vgg16-397923af.pth", "ViT-L-14-336px.pt",
                     "weights-inception-2015-12-05-6726825d.pth", "looked in:", "pqstudy weights install",
                     str(empty_caches / "torch" / "hub" / "checkpoints"), *ENV_OVERRIDES):  # fmt: skip
        assert fragment in text, fragment


# --- missing weights: recorded, quick, no network --------------------------------------------------------------------


def test_missing_weights_give_a_one_line_reason_quickly(empty_caches):
    ckpt = str(empty_caches / "torch" / "hub" / "checkpoints")
    start = time.perf_counter()
    model, reason = load_lpips("alex")
    assert model is None
    _one_line_naming(reason, "alexnet-owt-7be5be79.pth", ckpt, "PQSTUDY_LPIPS_ALEX")
    model, reason = load_lpips("vgg")
    assert model is None
    _one_line_naming(reason, "vgg16-397923af.pth", ckpt, "PQSTUDY_LPIPS_VGG")
    model, reason = load_inception()
    assert model is None
    _one_line_naming(reason, "weights-inception-2015-12-05-6726825d.pth", ckpt, "PQSTUDY_INCEPTION_WEIGHTS")
    model, reason = load_clip()
    assert model is None
    _one_line_naming(reason, "open_clip_model.safetensors", "ViT-L-14-336px.pt", "PQSTUDY_CLIP_WEIGHTS",
                     str(empty_caches / "home" / ".cache" / "clip"))  # fmt: skip
    assert time.perf_counter() - start < 5.0


def test_reference_metrics_record_missing_weights_and_go_on(empty_caches):
    start = time.perf_counter()
    rm = ReferenceMetrics(device="cpu")
    real, recon = _images(2)
    rm.update(real, recon)
    out = rm.compute()
    assert time.perf_counter() - start < 5.0
    assert set(out) == {"lpips", "rfid", "kid", "kid_std", "cmmd", "lpips_missing_reason", "rfid_missing_reason",
                        "kid_missing_reason", "cmmd_missing_reason"}  # fmt: skip
    assert all(out[name] is None for name in ("lpips", "rfid", "kid", "kid_std", "cmmd"))
    _one_line_naming(out["lpips_missing_reason"], "alexnet-owt-7be5be79.pth")
    _one_line_naming(out["rfid_missing_reason"], "weights-inception-2015-12-05-6726825d.pth")
    _one_line_naming(out["kid_missing_reason"], "weights-inception-2015-12-05-6726825d.pth")
    _one_line_naming(out["cmmd_missing_reason"], "ViT-L-14-336px.pt")


def test_unknown_metric_name_is_rejected():
    with pytest.raises(ValueError, match="fid"):
        ReferenceMetrics(names=("lpips", "fid"))


def test_corrupt_weight_files_are_recorded_not_raised(empty_caches, monkeypatch):
    bad = empty_caches / "corrupt.pth"
    bad.write_bytes(b"not a checkpoint")
    for var in ENV_OVERRIDES:
        monkeypatch.setenv(var, str(bad))
    for loader in (lambda: load_lpips("alex"), load_inception, lambda: load_clip(model_cfg=TINY_TEST_CFG)):
        model, reason = loader()
        assert model is None
        _one_line_naming(reason, "failed to load", str(bad))


def test_no_network_fails_at_once_and_restores(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo
    start = time.perf_counter()
    with no_network():
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        with pytest.raises(OSError):
            urllib.request.urlopen("http://192.0.2.1/weights.pth", timeout=60)  # TEST-NET: would hang if tried
        with pytest.raises(NetworkDisabledError):
            socket.create_connection(("192.0.2.1", 80), timeout=60)
    assert time.perf_counter() - start < 2.0
    assert socket.socket.connect is connect and socket.getaddrinfo is getaddrinfo
    assert "HF_HUB_OFFLINE" not in os.environ


# --- LPIPS -----------------------------------------------------------------------------------------------------------


def _lpips_lin_state(net: str) -> dict[str, torch.Tensor]:
    return torch.load(find_weights(f"lpips_{net}_lin").path, map_location="cpu", weights_only=True)


def test_lpips_loads_the_local_alexnet_file(empty_caches):
    import torchvision

    torch.manual_seed(3)
    state = torchvision.models.alexnet(weights=None).state_dict()  # a stand-in for the ImageNet file
    ckpt = empty_caches / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / "alexnet-owt-7be5be79.pth")

    model, reason = load_lpips("alex")
    assert reason is None and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    params = model.state_dict()
    for index in (0, 3, 6, 8, 10):  # every conv of AlexNet's features, wherever lpips put it
        (key,) = [k for k in params if k.startswith("net.slice") and k.endswith(f".{index}.weight")]
        assert torch.equal(params[key], state[f"features.{index}.weight"])
    for key, value in _lpips_lin_state("alex").items():
        assert torch.equal(params[key], value)

    real, recon = _images(4)
    d = model(real, recon).flatten()
    assert d.shape == (4,) and torch.isfinite(d).all() and (d > 0).all()
    assert model(real, real).abs().max() < 1e-6


def test_lpips_loads_the_local_vgg_file_for_the_training_loss(empty_caches, monkeypatch):
    import torchvision

    torch.manual_seed(4)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"]).state_dict()  # VGG16's trunk
    state = {f"features.{k}": v for k, v in features.items()}  # the classifier keys are not needed
    path = empty_caches / "my_vgg.pth"
    torch.save(state, path)
    monkeypatch.setenv("PQSTUDY_LPIPS_VGG", str(path))

    model, reason = load_lpips("vgg")
    assert reason is None
    params = model.state_dict()
    for key, value in state.items():
        index_param = key.removeprefix("features.")
        (target,) = [k for k in params if k.startswith("net.slice") and k.split(".", 2)[2] == index_param]
        assert torch.equal(params[target], value)
    for key, value in _lpips_lin_state("vgg").items():
        assert torch.equal(params[key], value)
    real, recon = _images(2)
    before = model(real, recon)
    assert torch.equal(model.train()(real, recon), before)  # a parent's .train() switches no dropout on
    real.requires_grad_(True)
    model(real, recon).sum().backward()  # usable as a training loss: gradients reach the images
    assert real.grad is not None and torch.isfinite(real.grad).all()


def test_lpips_random_backbone_pipeline(empty_caches):
    model, reason = load_lpips("alex", random_backbone=True)  # test-only switch: no weights needed
    assert reason is None
    real, recon = _images(4)
    d = model(real, recon).flatten()
    assert d.shape == (4,) and torch.isfinite(d).all() and (d >= 0).all()
    with pytest.raises(ValueError, match="squeeze"):
        load_lpips("squeeze")


@pytest.mark.filterwarnings("ignore:ReferenceMetrics.random_backbones")
def test_lpips_failure_on_the_data_is_recorded(empty_caches):
    rm = ReferenceMetrics(names=("lpips",), random_backbones=True)
    with pytest.warns(UserWarning, match="lpips failed"):
        rm.update(*_images(2, size=8))  # too small for AlexNet's pooling
    out = rm.compute()
    assert out["lpips"] is None and "lpips failed" in out["lpips_missing_reason"]


# --- rFID / KID through torch-fidelity --------------------------------------------------------------------------------


def test_to_uint8_rounds_into_the_full_range():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 1.0, 2.0])
    y = to_uint8(x)
    assert y.dtype == torch.uint8
    assert y.tolist() == [0, 0, 0, 128, 191, 255, 255]  # (x + 1) · 127.5, rounded; 127.5 → 128, 191.25 → 191


@pytest.mark.parametrize(("n1", "n2", "d"), [(16, 20, 64), (5, 9, 64), (60, 10, 32), (40, 50, 16)])
def test_frechet_distance_equals_torch_fidelitys(n1, n2, d):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(n1 + n2 + d)
    f1, f2 = torch.rand(n1, d, generator=g), torch.rand(n2, d, generator=g) * 1.3 + 0.1
    reference = fid_statistics_to_metric(fid_features_to_statistics(f1), fid_features_to_statistics(f2), False)
    assert frechet_distance(f1, f2) == pytest.approx(reference["frechet_inception_distance"], rel=1e-6)
    assert frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-3)


class _Spy(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x)
        return self.inner(x)


def test_torch_fidelity_gets_uint8_images_at_their_own_size(empty_caches):
    extractor, reason = load_inception(random_backbone=True)
    assert reason is None
    spy = _Spy(extractor)
    acc = FidKidAccumulator(spy, batch_size=1)
    real, recon = _images(2, size=24)
    acc.update(real[:1], recon[:1])
    missing = "rfid/kid: need at least 2 images, got 1"
    assert acc.compute() == {"rfid": None, "rfid_missing_reason": missing, "kid": None, "kid_std": None,
                             "kid_missing_reason": missing}  # fmt: skip
    acc.update(real[1:], recon[1:])
    assert [tuple(x.shape) for x in spy.seen] == [(1, 3, 24, 24)] * 4  # at their own size: t-f resizes to 299
    for x in spy.seen:
        assert x.dtype == torch.uint8 and int(x.min()) >= 0 and int(x.max()) <= 255
    assert torch.equal(torch.cat(spy.seen[0::2]), to_uint8(real))  # real, recon alternate per update
    assert int(torch.cat(spy.seen).max()) > 200 and int(torch.cat(spy.seen).min()) < 50  # full range, not [0, 1]
    out = acc.compute()
    assert acc.count == 2
    assert all(np.isfinite(out[k]) for k in ("rfid", "kid", "kid_std"))  # KID subset size falls back to 2
    assert set(acc.compute(fid=False)) == {"kid", "kid_std"} and set(acc.compute(kid=False)) == {"rfid"}


def test_inception_loads_a_local_weights_file(empty_caches, monkeypatch):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    random_extractor, _ = load_inception(random_backbone=True)
    state = random_extractor.state_dict()
    path = empty_caches / "inception.pth"
    torch.save(state, path)
    monkeypatch.setenv("PQSTUDY_INCEPTION_WEIGHTS", str(path))
    extractor, reason = load_inception()
    assert reason is None and not extractor.training
    assert isinstance(extractor, FeatureExtractorInceptionV3) and extractor.features_list == ["2048"]
    loaded = extractor.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


# --- CMMD ------------------------------------------------------------------------------------------------------------


def test_cmmd_random_backbone_pipeline(empty_caches):
    from open_clip.transformer import QuickGELU

    embedder, reason = load_clip(random_backbone=True)
    assert reason is None
    assert any(isinstance(m, QuickGELU) for m in embedder.modules())
    real, recon = _images(4)
    assert embedder.preprocess(real).shape == (4, 3, 336, 336)  # bicubic to 336 px
    emb = embedder(real)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(4), atol=1e-5)
    acc = CmmdAccumulator(embedder, batch_size=3)
    acc.update(real, recon)
    value = acc.compute()["cmmd"]
    assert np.isfinite(value) and value > 0
    assert value == pytest.approx(mmd(embedder(real), embedder(recon)), rel=1e-4)  # batching changes rounding
    same = CmmdAccumulator(embedder)
    same.update(real, real)
    assert same.compute()["cmmd"] == pytest.approx(0.0, abs=1e-9)


def test_clip_loads_a_local_checkpoint(empty_caches, monkeypatch):
    import open_clip

    torch.manual_seed(5)
    source = open_clip.CLIP(**TINY_TEST_CFG, quick_gelu=True)
    path = empty_caches / "clip.bin"
    torch.save(source.state_dict(), path)
    monkeypatch.setenv("PQSTUDY_CLIP_WEIGHTS", str(path))
    embedder, reason = load_clip(model_cfg=TINY_TEST_CFG)  # the real loader, on a small architecture
    assert reason is None and embedder.image_size == 336
    loaded = embedder.visual.state_dict()
    assert all(torch.equal(v, source.visual.state_dict()[k]) for k, v in loaded.items())
    assert not any(p.requires_grad for p in embedder.parameters())


# --- everything together ---------------------------------------------------------------------------------------------


def test_reference_metrics_end_to_end_with_random_backbones(empty_caches):
    with pytest.warns(UserWarning, match="test-only"):
        rm = ReferenceMetrics(random_backbones=True, batch_size=4)
    assert rm.available == ("lpips", "rfid", "kid", "cmmd")
    real, recon = _images(2)
    rm.update(real[:1], recon[:1])  # streamed in two batches
    rm.update(real[1:], recon[1:])
    out = rm.compute()
    for name in ("lpips", "rfid", "kid", "kid_std", "cmmd"):
        assert isinstance(out[name], float) and np.isfinite(out[name]), name
    assert not any(k.endswith("_missing_reason") for k in out)
    assert out["reference_random_backbones"] is True and out["lpips"] > 0 and out["cmmd"] > 0
