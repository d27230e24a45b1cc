"""Unpickle numpy data from files made elsewhere without running their code.

A pickle names callables that the loader calls (``GLOBAL`` + ``REDUCE``): a plain ``pickle.load`` of a file from
elsewhere runs whatever it names (``os.system``, ``builtins.open`` …). :func:`load_numpy_pickle` admits only what a
pickle of numpy arrays inside plain containers needs — numpy's ``ndarray``, ``dtype`` and ``_reconstruct`` (under
both its numpy 1 and numpy 2 module names) and ``scalar`` — and refuses any other name with
:class:`UnsafePickleError` before anything is called. Containers (dict, list, tuple, str, bytes, numbers) need no
name, so they always load.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "load_numpy_pickle"]

ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "core.multiarray._reconstruct"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names something other than numpy arrays and plain containers."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle: it names {module}.{name}, but only numpy arrays in plain "
                "containers are admitted (a pickle can run code when it is loaded)"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused to unpickle: persistent ids are not admitted")


def load_numpy_pickle(path: str | os.PathLike | bytes, source: str | None = None):
    """The object in the pickle file ``path`` (or the pickle bytes), admitting numpy arrays and plain containers only.

    Byte strings inside stay ``bytes`` (``encoding="bytes"``, as CIFAR-10's python-2 pickles need).
    """
    if isinstance(path, bytes):
        return _NumpyOnlyUnpickler(io.BytesIO(path), source or "<bytes>").load()
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, source or str(Path(path))).load()
