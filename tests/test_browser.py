"""A real browser: JupyterLab in headless Chromium runs ``notebooks/train_eval.ipynb`` at smoke scale.

The notebook is copied into a temporary root with a papermill-style injected parameters cell (smoke profile, a few
steps, run and results directories inside the temporary root). JupyterLab serves that root on 127.0.0.1 (a free port,
a token, no browser); Chromium, driven by selenium through Debian's chromedriver, opens the notebook, selects this
checkout's kernel as a user does (Kernel → Change Kernel…, by its display name), runs every cell from the Run menu and
saves the notebook from the File menu. The test checks that the notebook's session runs this checkout's kernel, that a
figure is rendered (an ``<img>`` in an output area), that no cell errored (in the page and in the saved file), and
saves a screenshot (its path is printed).

The browser comes from ``apt-get install chromium chromium-driver`` (``setup.sh`` installs it where missing and it
can); without it the test skips saying so, unless ``PQSTUDY_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "train_eval.ipynb"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
SERVER_START_S = 60  # bounded waits: the whole test stays well under two minutes
PAGE_LOAD_S = 60
RUN_ALL_S = 120
SHUTDOWN_S = 10
# Smoke scale, a few steps; paths inside the temporary root.
PARAMETERS = {
    "profile": "smoke",
    "train_steps": 4,
    "train_batch_size": 8,
    "train_history_every": 2,
    "train_eval_limit": 16,
    "train_eval_metrics": "",
    "train_threads": 1,
}


def _browser_or_skip() -> tuple[str, str]:
    """Paths of chromium and chromedriver; a skip naming what is missing (a failure where CI requires them)."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None:
        missing.append("chromium")
    if driver is None:
        missing.append("chromedriver")
    if missing:
        why = (
            f"no browser: {', '.join(missing)} not installed (setup.sh installs them as root: "
            "apt-get install -y chromium chromium-driver)"
        )
        if os.environ.get("PQSTUDY_REQUIRE_BROWSER") == "1":
            pytest.fail(why + "; PQSTUDY_REQUIRE_BROWSER=1 requires the browser test to run")
        pytest.skip(why)
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_root(root: Path, run_dir: Path, results_dir: Path) -> Path:
    """The notebook copied into ``root`` with injected parameters (its kernel metadata kept as committed)."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(NOTEBOOK))
    params = {**PARAMETERS, "run_dir": str(run_dir), "results_dir": str(results_dir)}
    nb = parameterize_notebook(nb, params)
    path = root / NOTEBOOK.name
    nbformat.write(nb, path)
    return path


def _lab_settings(settings: Path) -> None:
    """User settings of the temporary JupyterLab: no news or update checks (no network), every cell in the DOM."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for name, values in files.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))


def _api(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _saved_after_run(path: Path) -> bool:
    """Whether the file on disk holds the executed notebook (False while it is absent, stale or half-written)."""
    try:
        return all(c.get("execution_count") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    except (OSError, ValueError):
        return False


def _session_kernels(base: str, token: str, name: str) -> list[str]:
    """The kernel names of the server's sessions of notebook ``name``."""
    return [
        s["kernel"]["name"]
        for s in _api(f"{base}/api/sessions?token={token}")
        if s["path"].endswith(name) and s.get("kernel")
    ]


@contextlib.contextmanager
def _jupyterlab(root: Path, state: Path):
    """A JupyterLab server on 127.0.0.1: yields (base url, token); stopped (its process group) at the end."""
    port, token = _free_port(), secrets.token_hex(16)
    for sub in ("config", "data", "runtime", "settings", "workspaces"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    _lab_settings(state / "settings")
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_DATA_DIR": str(state / "data"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:  # containers and CI run as root
        command.append("--allow-root")
    log = open(state / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with {server.returncode}: {(state / 'jupyterlab.log').read_text()[-2000:]}"
                )
            try:
                _api(f"{base}/api/status?token={token}", timeout=2.0)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JupyterLab did not answer on {base} within {SERVER_START_S} s") from None
                time.sleep(0.5)
        yield base, token
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            server.wait(timeout=SHUTDOWN_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=SHUTDOWN_S)
        log.close()


def _chromium(chromium: str, driver: str, profile_dir: Path, log_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver, log_output=str(log_path)))
    browser.set_page_load_timeout(PAGE_LOAD_S)
    browser.set_script_timeout(PAGE_LOAD_S)
    return browser


def _click_menu(browser, wait, menu: str, item: str) -> None:
    """Open ``menu`` in the menu bar and click its entry ``item``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    bar = f"//div[contains(@class, 'lm-MenuBar-itemLabel') and normalize-space()='{menu}']"
    wait.until(ec.element_to_be_clickable((By.XPATH, bar))).click()
    entry = f"//div[contains(@class, 'lm-Menu-itemLabel') and normalize-space()='{item}']"
    wait.until(ec.element_to_be_clickable((By.XPATH, entry))).click()


PROMPTS_JS = """
return Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
            .map(e => e.textContent.trim());
"""
# JupyterLab renders an error output (and a stream written to stderr) with the stderr mime type.
ERRORS_JS = """
return Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output'))
            .filter(e => (e.getAttribute('data-mime-type') || '').includes('stderr')
                         && /Traceback|\\b\\w*Error\\b/.test(e.textContent))
            .map(e => e.textContent.trim().slice(-500));
"""


def _wait_for_run_all(browser, n_cells: int) -> list[str]:
    """Prompts of every code cell once all have run ("[n]:"); raises TimeoutError with what is left."""
    deadline = time.monotonic() + RUN_ALL_S
    prompts: list[str] = []
    while time.monotonic() < deadline:
        prompts = browser.execute_script(PROMPTS_JS)
        done = len(prompts) == n_cells and all(p.startswith("[") and p[1:-2].strip().isdigit() for p in prompts)
        if done:
            return prompts
        errors = browser.execute_script(ERRORS_JS)
        if errors and "[*]:" not in prompts:  # Run All stops at a failing cell: say which error, at once
            raise AssertionError(f"a cell failed, the rest did not run (prompts {prompts}): {errors[0]}")
        time.sleep(1.0)
    raise TimeoutError(f"the notebook did not finish within {RUN_ALL_S} s; prompts: {prompts}")


def test_jupyterlab_runs_train_eval_notebook_in_chromium(tmp_path, pqstudy_kernel, capsys):
    chromium, driver = _browser_or_skip()
    from jupyter_client.kernelspec import KernelSpecManager
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    kernel = pqstudy_kernel  # this checkout's kernel name (pqstudy.study.kernel.kernel_name()), running this Python
    display_name = KernelSpecManager().get_kernel_spec(kernel).display_name
    root, state = tmp_path / "lab", tmp_path / "state"
    root.mkdir()
    notebook = _prepare_root(root, run_dir=root / "run", results_dir=root / "results")
    n_cells = sum(cell.cell_type == "code" for cell in nbformat.read(notebook, as_version=4).cells)
    screenshot = tmp_path / "train_eval_in_jupyterlab.png"
    with _jupyterlab(root, state) as (base, token):
        browser = _chromium(chromium, driver, state / "chromium-profile", state / "chromedriver.log")
        try:
            wait = WebDriverWait(browser, PAGE_LOAD_S)
            browser.get(f"{base}/lab/tree/{notebook.name}?token={token}")
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")))
            # whatever kernel the notebook names starts; then the user picks this checkout's in Kernel → Change Kernel
            wait.until(lambda b: _session_kernels(base, token, notebook.name))
            _click_menu(browser, wait, "Kernel", "Change Kernel…")
            choice = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".jp-Dialog select")))
            Select(choice).select_by_visible_text(display_name)
            browser.find_element(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept").click()
            wait.until(lambda b: _session_kernels(base, token, notebook.name) == [kernel])
            wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".jp-Toolbar-kernelName").text == display_name)
            wait.until(
                lambda b: (
                    b.find_element(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator").get_attribute("data-status")
                    == "idle"
                )
            )
            _click_menu(browser, wait, "Run", "Run All Cells")
            prompts = _wait_for_run_all(browser, n_cells)
            errors = browser.execute_script(ERRORS_JS)
            images = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
            if images:
                browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", images[-1])
                time.sleep(0.5)
            browser.save_screenshot(str(screenshot))
            _click_menu(browser, wait, "File", "Save Notebook")
            wait.until(lambda b: _saved_after_run(notebook))
        finally:
            browser.quit()
    with capsys.disabled():
        print(f"\nscreenshot of the executed notebook in JupyterLab: {screenshot}")
    assert errors == [], f"cells errored: {errors}"
    assert images, "no figure (<img> in an output area) was rendered"
    assert len(prompts) == n_cells
    saved = nbformat.read(notebook, as_version=4)
    outputs = [out for cell in saved.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert [out for out in outputs if out.output_type == "error"] == []
    assert saved.metadata.kernelspec.name == kernel
    assert any("image/png" in out.get("data", {}) for out in outputs)
    assert (root / "results" / "runs").is_dir() and (root / "run" / "metrics.json").is_file()
    assert screenshot.stat().st_size > 10_000
