"""Each checkout has its own Jupyter kernel: named after the checkout, installed inside its venv, running its code.

The two-checkout test builds two checkouts side by side (copies of this package in two folders of the same name)
with a cheap venv each (no pip; this interpreter's site-packages for the dependencies), installs each one's kernel
with ``python -m pqstudy.study.kernel install`` and starts it by name from the other venv's point of view too."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from jupyter_client.kernelspec import _is_valid_kernel_name

from pqstudy.study.kernel import REPO_ROOT, display_name, kernel_name, main, require_kernel


def test_kernel_name_is_stable_valid_and_differs_between_checkouts(tmp_path):
    name = kernel_name()
    assert name == kernel_name(REPO_ROOT) == kernel_name(str(REPO_ROOT) + "/")
    assert re.fullmatch(r"pqstudy-[a-z0-9-]+-[0-9a-f]{8}", name) and _is_valid_kernel_name(name)
    a, b = tmp_path / "x" / "My Study.v2", tmp_path / "y" / "My Study.v2"
    assert kernel_name(a).startswith("pqstudy-my-study-v2-") and kernel_name(a) != kernel_name(b)
    assert _is_valid_kernel_name(kernel_name(tmp_path / "ü€"))
    assert display_name(a) == f"pqstudy ({a.resolve()})"


def test_name_command_prints_the_name(capsys):
    assert main(["name"]) == 0
    assert capsys.readouterr().out == kernel_name() + "\n"


def test_missing_kernel_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"kernel 'pqstudy-nowhere-00000000' is not installed.*kernel install"):
        require_kernel("pqstudy-nowhere-00000000")


def test_sweep_refuses_a_missing_kernel_before_running_anything(tmp_path):
    from pqstudy.config import get_profile
    from pqstudy.study import run_sweep

    with pytest.raises(RuntimeError, match="not installed"):
        run_sweep("g", [get_profile("smoke")], results_dir=tmp_path / "results", runs_root=tmp_path / "runs",
                  papermill_dir=tmp_path / "pm", kernel="pqstudy-nowhere-00000000", progress=False)
    assert not (tmp_path / "runs").exists() and not list((tmp_path / "results").glob("runs/*.json"))


# --- two checkouts side by side ---------------------------------------------------------------------------------

DRIVER = textwrap.dedent("""
    import json, sys
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    own, other = sys.argv[1], sys.argv[2]
    specs = KernelSpecManager().find_kernel_specs()
    km, kc = start_new_kernel(kernel_name=own, startup_timeout=60)
    out = []
    try:
        # which pqstudy this kernel imports (found, not imported: importing it costs seconds of torch)
        code = "import importlib.util, sys; print(importlib.util.find_spec('pqstudy').origin, sys.prefix)"
        reply = kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", "")))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(json.dumps({"status": reply["content"]["status"], "printed": "".join(out).split(),
                      "own_spec": specs.get(own), "other_spec": specs.get(other)}))
""")


def _checkout_with_venv(parent: Path) -> tuple[Path, Path]:
    """A checkout (this package copied to ``parent/pqstudy-study``) and its venv, whose interpreter imports the
    checkout's package first and takes every dependency from this interpreter's site-packages."""
    root = parent / "pqstudy-study"
    shutil.copytree(REPO_ROOT / "pqstudy", root / "pqstudy", ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "a_checkout.pth").write_text(f"{root}\n")  # like the editable install setup.sh makes
    deps = sysconfig.get_paths()["purelib"]
    Path(site, "b_dependencies.pth").write_text(f"import site; site.addsitedir({deps!r})\n")
    return root, python


def _run_both(commands: list[list], env: dict, cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run the two checkouts' commands at once (each mostly waits on importing torch)."""
    procs = [subprocess.Popen(c, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outputs = [p.communicate(timeout=180) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs, strict=True)]


def test_two_checkouts_each_get_their_own_kernel_running_their_own_code(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER"))}
    env.update(JUPYTER_DATA_DIR=str(tmp_path / "user-data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "user-config"), OMP_NUM_THREADS="1")
    checkouts = [_checkout_with_venv(tmp_path / side) for side in ("a", "b")]
    names = [kernel_name(root) for root, _ in checkouts]
    assert names[0] != names[1]
    installs = _run_both([[python, "-m", "pqstudy.study.kernel", "install"] for _, python in checkouts], env, tmp_path)
    for (root, python), name, done in zip(checkouts, names, installs, strict=True):
        assert done.returncode == 0, done.stderr
        spec_dir = python.parent.parent / "share" / "jupyter" / "kernels" / name  # inside the venv
        assert f"installed Jupyter kernel {name!r} (pqstudy ({root}))" in done.stdout and str(spec_dir) in done.stdout
        spec = json.loads((spec_dir / "kernel.json").read_text())
        assert spec["argv"][0] == str(python) and spec["display_name"] == f"pqstudy ({root})"
    assert not (tmp_path / "user-data").exists()  # nothing installed for the whole user
    runs = _run_both([[python, "-c", DRIVER, names[i], names[1 - i]] for i, (_, python) in enumerate(checkouts)],
                     env, tmp_path)
    for (root, python), done in zip(checkouts, runs, strict=True):
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["status"] == "ok" and result["other_spec"] is None  # the other checkout's kernel is not seen
        assert Path(result["own_spec"]).parent.parent.parent.parent == python.parent.parent
        package, prefix = result["printed"]
        assert Path(package) == root / "pqstudy" / "__init__.py" and Path(prefix) == python.parent.parent
