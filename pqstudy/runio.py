"""Run-directory files: atomic writes (JSON, checkpoints) and weights-only checkpoint loading.

Every write goes to a uniquely named temporary file beside the target (``.<name>.<pid>.<random>.tmp``), is flushed and
fsynced, then renamed over the target: a reader never sees half a file, two writers never share a temporary file,
and a failed write (a full disk included) removes its temporary file and leaves the previous version in place.

Checkpoints hold only tensors and plain Python types (dicts, lists, numbers, strings, None) and are loaded with
``torch.load(weights_only=True)``, which refuses anything else: a checkpoint from elsewhere cannot run code here.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import secrets
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded safely (not weights-only) or is not a readable checkpoint."""


def _clean(value):
    """JSON-safe: NaN/inf → None, tensors and numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(file)`` into a unique temporary file, fsync it and rename it into place.

    On any failure (``OSError(ENOSPC)`` from a full disk, an exception inside ``write``) the temporary file is
    removed and the exception propagates; ``path`` keeps its previous content, or stays absent.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # unique name; the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, data) -> None:
    """Write JSON atomically (see ``atomic_write``): a reader never sees half a file."""
    text = json.dumps(_clean(data), indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def plain(value):
    """``value`` with numpy arrays turned into tensors and numpy scalars into Python numbers (recursively), so that
    ``torch.load(weights_only=True)`` accepts it."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_checkpoint(run_dir: str | os.PathLike, state: dict) -> Path:
    """Write ``run_dir/checkpoint.pt`` atomically, holding only tensors and plain types."""
    return atomic_write(Path(run_dir) / CHECKPOINT, lambda f: torch.save(plain(state), f))


def _numpy_array_globals() -> list:
    """What a pickled numeric numpy array needs: checkpoints written before pqstudy stored tensors held the
    codebook-usage history as int32 numpy arrays. Numeric dtypes only (no object arrays)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    names = ("BoolDType", "Int8DType", "Int16DType", "Int32DType", "Int64DType", "UInt8DType", "UInt16DType",
             "UInt32DType", "UInt64DType", "Float16DType", "Float32DType", "Float64DType")
    return [_reconstruct, np.ndarray, np.dtype, *(getattr(np.dtypes, n) for n in names if hasattr(np.dtypes, n))]


def _unpickling_reason(err: Exception) -> str:
    """The line of torch's weights-only error that says what was refused (e.g. ``unsupported GLOBAL posix.system``)."""
    lines = [" ".join(line.split()) for line in str(err).splitlines() if line.strip()]
    found = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
    return (found or lines or [type(err).__name__])[0][:300]


def load_checkpoint(run_dir: str | os.PathLike, map_location="cpu") -> dict:
    """``run_dir/checkpoint.pt``, loaded weights-only: tensors, plain types and numeric numpy arrays, nothing else.

    A file that holds anything more (arbitrary objects, code) or is not a checkpoint raises ``CheckpointError``
    naming the file; nothing in it is executed.
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain types, so loading it could "
            f"run code ({_unpickling_reason(err)}). pqstudy checkpoints never do; re-train the run, or use only "
            "checkpoints you wrote."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        reason = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{path}: not a readable pqstudy checkpoint ({type(err).__name__}: {reason})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a pqstudy checkpoint (holds a {type(state).__name__}, not a dict)")
    return state


class OutputDirError(ValueError):
    """An output directory cannot be used: it is a file, or it cannot be written."""


def check_output_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Fail early, creating nothing, unless ``path`` is a writable directory or can be created as one.

    Checks the nearest existing ancestor: it must be a directory we may write in. When ``path`` exists that is
    ``os.access`` (which sees permissions and read-only mounts, and leaves the directory untouched); when it must be
    created, creating a file is tried for real in the ancestor (a temporary file, removed at once), which also
    catches what ``access`` lets root through, such as ``/proc``.
    """
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise OutputDirError(f"{what} {path}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file, not a directory"
        raise OutputDirError(f"{what} {path} {where}")
    if existing == path:
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputDirError(f"{what} {path}: cannot write in it (permission denied or read-only)")
        return path
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".pqstudy-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputDirError(f"{what} {path}: cannot write in {existing} ({err.strerror or err})") from None
    return path
