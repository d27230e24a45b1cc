"""The data root: ``PQSTUDY_DATA_DIR`` if set, else ``data.root``, else ``data`` (``config.data_root``).

A relative path is taken from the repository root, whatever the working directory (JupyterLab runs notebooks in
``notebooks/``). Only the default root is ever created (to download CIFAR-10 into).
"""

from __future__ import annotations

import os
from pathlib import Path

from pqstudy.config import DataConfig, data_root

ENV_VAR = "PQSTUDY_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = "data"
ROOT_HELP = (f"the data root is {ENV_VAR} if set, else data.root, else {DEFAULT_ROOT}/; a relative path is taken "
             "from the repository root")


def resolve_data_root(cfg: DataConfig) -> Path:
    """The data root as an absolute path (see the module docstring): relative paths from the repository root, or
    from the working directory where the package is not inside a checkout."""
    path = Path(data_root(cfg)).expanduser()
    if path.is_absolute():
        return path
    base = REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()
    return base / path


def named_root(cfg: DataConfig) -> bool:
    """Whether the data root was named (``PQSTUDY_DATA_DIR`` or ``data.root``) rather than the default."""
    return bool(os.environ.get(ENV_VAR) or cfg.root)
