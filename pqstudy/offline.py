"""Offline guards (util layer): where local weight caches are, and a block in which the network is refused.

pqstudy never downloads weights while it builds a network: reference metrics (:mod:`pqstudy.metrics`) and the CLIP
feature source of ``lc`` codebooks (:mod:`pqstudy.codebooks.sources`) both load local files inside
:func:`no_network`.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved like ``huggingface_hub`` does (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


class NetworkDisabledError(OSError):
    """Raised at once for any network attempt inside :func:`no_network`."""


@contextlib.contextmanager
def no_network(reason: str = "pqstudy loads reference-network weights from local files only") -> Iterator[None]:
    """Make every socket connection and name lookup fail at once, and set ``HF_HUB_OFFLINE=1``, for the block.

    Process-wide while active (it patches :mod:`socket`), so keep the block short: it wraps model construction only.
    """

    def refuse(*_args, **_kwargs):
        raise NetworkDisabledError(f"network disabled: {reason}")

    saved = {
        "connect": socket.socket.connect,
        "connect_ex": socket.socket.connect_ex,
        "getaddrinfo": socket.getaddrinfo,
        "create_connection": socket.create_connection,
    }
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        socket.socket.connect = saved["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = saved["connect_ex"]  # type: ignore[method-assign]
        socket.getaddrinfo = saved["getaddrinfo"]
        socket.create_connection = saved["create_connection"]
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env
