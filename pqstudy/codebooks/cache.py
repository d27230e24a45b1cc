"""Built codebooks as content-addressed files: ``<source>-<strategy>-N<n>-C<c>-<hash>.pt`` + ``.json`` provenance.

The hash is sha1 of the provenance: :data:`CODEBOOK_VERSION`, the feature source's fingerprint (spec, patch or C,
checkpoint sha1 of an encoder run, CLIP weight file), the strategy, N, the feature samples drawn, the k-means
iterations, the seed, and for data-built codebooks the dataset's name / image size / train limit and
:func:`pqstudy.data.data_fingerprint` of its files. Same provenance → same file → the build is loaded;
changed data, seed or source → a new file. The ``.pt`` holds ``{"codebook": (N, C) float32, "meta": provenance JSON}``
and the ``.json`` beside it the provenance plus the tensor's shape, readable without torch.

Files written before the ``.json`` existed (same names and hashes) still load: their embedded ``meta`` must equal the
provenance, and the ``.json`` is then written beside them. A file that cannot be read, has the wrong shape or another
provenance is rebuilt, with a :class:`~pqstudy.codebooks.strategies.CodebookWarning` naming it.

Directory: ``quantizer.codebook_cache``, else ``$PQSTUDY_CACHE_DIR/codebooks``, else ``~/.cache/pqstudy/codebooks``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

from pqstudy.codebooks.strategies import CodebookWarning

CODEBOOK_VERSION = 1  # bump when the construction changes: old cache entries are then ignored


def default_cache_dir() -> Path:
    env = os.environ.get("PQSTUDY_CACHE_DIR")
    return Path(env).expanduser() / "codebooks" if env else Path("~/.cache/pqstudy/codebooks").expanduser()


def cache_dir(q) -> Path:
    """Where the codebooks of ``QuantizerConfig`` q are cached."""
    return Path(q.codebook_cache).expanduser() if q.codebook_cache else default_cache_dir()


def provenance_digest(provenance: dict) -> str:
    return hashlib.sha1(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]


def artefact_path(root: Path, provenance: dict, slug: str, dim: int) -> Path:
    """The file named by the provenance's hash (``slug``: the source kind, for people reading the folder)."""
    return root / f"{slug}-{provenance['strategy']}-N{provenance['n_codes']}-C{dim}-{provenance_digest(provenance)}.pt"


def provenance_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_provenance(path: Path) -> dict:
    """The ``.json`` provenance of a cached codebook file."""
    return json.loads(provenance_path(path).read_text())


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_provenance(path: Path, provenance: dict, shape: tuple[int, ...]) -> None:
    text = json.dumps({"provenance": provenance, "shape": list(shape), "file": path.name}, indent=2, sort_keys=True)
    _atomic_write(provenance_path(path), lambda tmp: tmp.write_text(text + "\n"))


def save(path: Path, codebook: Tensor, provenance: dict) -> None:
    """Write the codebook file and its provenance beside it."""
    codebook = codebook.contiguous()
    meta = json.dumps(provenance, sort_keys=True)
    _atomic_write(path, lambda tmp: torch.save({"codebook": codebook, "meta": meta}, tmp))
    _write_provenance(path, provenance, tuple(codebook.shape))


def load(path: Path, provenance: dict, shape: tuple[int, int]) -> Tensor | None:
    """The cached codebook at ``path`` if it is there and matches ``provenance`` and ``shape``; else None (a file that
    is there but unusable gets a warning naming it, and is rebuilt by the caller)."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        codebook, meta = stored["codebook"], json.loads(stored["meta"])
    except Exception as err:  # a corrupt or foreign file is rebuilt
        warnings.warn(f"{path}: unreadable codebook cache ({err}); rebuilding", CodebookWarning, stacklevel=3)
        return None
    if meta != provenance or tuple(codebook.shape) != tuple(shape):
        warnings.warn(f"{path}: cached codebook of shape {tuple(codebook.shape)} does not match this build (shape "
                      f"{tuple(shape)}, provenance {json.dumps(provenance, sort_keys=True)}); rebuilding",
                      CodebookWarning, stacklevel=3)
        return None
    if not provenance_path(path).is_file():  # cached before provenance files were written: add it
        _write_provenance(path, provenance, tuple(codebook.shape))
    return codebook
