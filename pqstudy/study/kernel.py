"""This checkout's own Jupyter kernel: named after the checkout, installed inside its virtual environment.

A kernel registered for the whole user under a fixed name is shared by every checkout on the machine, and the last
``setup.sh`` wins: sweeps and notebooks of one checkout would silently run another's code. So each checkout gets a
kernel whose name is derived from its absolute path (``kernel_name``), installed under ``sys.prefix`` (the venv's
``share/jupyter/kernels``) and running the venv's interpreter; the sweep runner and the tests use exactly that name.

    python -m pqstudy.study.kernel install   # setup.sh does this
    python -m pqstudy.study.kernel name      # prints the name, e.g. pqstudy-main-1a2b3c4d
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OLD_SHARED_NAME = "pqstudy"  # what setup.sh registered for the whole user before each checkout had its own kernel


def kernel_name(root: str | os.PathLike = REPO_ROOT) -> str:
    """``pqstudy-<checkout folder name>-<8 hex digits of sha1(absolute path)>``: stable for a checkout, different
    for two checkouts (even two with the same folder name)."""
    root = Path(root).resolve()
    slug = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")[:40].strip("-") or "root"
    digest = hashlib.sha1(str(root).encode("utf-8")).hexdigest()[:8]
    return f"pqstudy-{slug}-{digest}"


def display_name(root: str | os.PathLike = REPO_ROOT) -> str:
    """What JupyterLab lists: ``pqstudy (<absolute checkout path>)``."""
    return f"pqstudy ({Path(root).resolve()})"


def install(root: str | os.PathLike = REPO_ROOT, prefix: str | os.PathLike | None = None) -> Path:
    """Install the kernel of checkout ``root`` under ``prefix`` (default: this interpreter's ``sys.prefix``, i.e. the
    venv), running this interpreter; replaces an earlier spec of the same name. Returns the spec's directory."""
    from ipykernel.kernelspec import install as install_spec

    path = install_spec(kernel_name=kernel_name(root), display_name=display_name(root),
                        prefix=str(prefix or sys.prefix))
    return Path(path)


def installed_spec(name: str | None = None) -> Path | None:
    """The directory of the kernel spec Jupyter finds under ``name`` (default: this checkout's), or None."""
    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager().find_kernel_specs().get(name or kernel_name())
    return None if found is None else Path(found)


def require_kernel(name: str | None = None) -> str:
    """``name`` (default: this checkout's kernel) if Jupyter finds it; else a clear error saying how to install it."""
    name = name or kernel_name()
    if installed_spec(name) is None:
        raise RuntimeError(f"Jupyter kernel {name!r} is not installed (each checkout has its own); install it with "
                           f"{sys.executable} -m pqstudy.study.kernel install  (setup.sh does this)")
    return name


def old_shared_kernel() -> Path | None:
    """The user-wide ``pqstudy`` kernel an earlier setup.sh registered (it runs whichever checkout set it up last),
    or None."""
    from jupyter_core.paths import jupyter_data_dir

    spec = Path(jupyter_data_dir()) / "kernels" / OLD_SHARED_NAME
    return spec if (spec / "kernel.json").exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pqstudy.study.kernel", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["name", "install"],
                        help="name: print this checkout's kernel name; install: install it inside this venv")
    args = parser.parse_args(argv)
    if args.command == "name":
        print(kernel_name())
        return 0
    path = install()
    print(f"installed Jupyter kernel {kernel_name()!r} ({display_name()}) in {path}")
    old = old_shared_kernel()
    if old is not None:
        print(f"note: the user-wide kernel {OLD_SHARED_NAME!r} from an earlier setup is no longer used and runs "
              f"whichever checkout registered it last; remove it with: jupyter kernelspec remove {OLD_SHARED_NAME}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
