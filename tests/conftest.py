import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` imported as a module (benchmarks are scripts, not a package; they may import each
    other, so their folder goes on ``sys.path``)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def benchmark_module():
    """:func:`load_benchmark`, for tests: ``benchmark_module("gpu_check")``."""
    return load_benchmark


def write_kernel_spec(jupyter_dir: Path) -> str:
    """Write this checkout's Jupyter kernel (``pqstudy.study.kernel.kernel_name()``, the name the sweep runner asks
    for) under ``jupyter_dir/kernels`` as a spec running this interpreter with one torch thread (the cores are
    shared); returns its name. Put ``jupyter_dir`` on ``JUPYTER_PATH`` to have it found before any installed one."""
    from pqstudy.study.kernel import kernel_name

    name = kernel_name()
    spec = jupyter_dir / "kernels" / name
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": f"pqstudy (tests, {name})",
                                                     "language": "python", "env": {"OMP_NUM_THREADS": "1"}}))
    return name


@pytest.fixture(scope="module")
def pqstudy_kernel(tmp_path_factory):
    """This checkout's kernel, running this interpreter, for tests that execute notebooks with papermill (see
    ``write_kernel_spec``). Yields the kernel's name."""
    root = tmp_path_factory.mktemp("jupyter")
    name = write_kernel_spec(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        yield name


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """One smoke-profile study (every grid through the sweep runner, then runs.csv, figures, REPORT.md), run once
    for the whole session and shared by the tests that check it (tests/test_study.py).
    Returns ``{"study": study.json's dict, "results", "runs", "papermill"}`` (paths)."""
    from pqstudy.figures import FIGURE_DESCRIPTIONS, make_all_figures
    from pqstudy.study.regenerate import run_grids_and_report

    tmp = tmp_path_factory.mktemp("smoke-study")
    write_kernel_spec(tmp / "jupyter")
    paths = {"results": tmp / "results", "runs": tmp / "runs", "papermill": tmp / "pm"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
        mp.setenv("PQSTUDY_CACHE_DIR", str(tmp / "cache"))
        study = run_grids_and_report("smoke", make_figures=make_all_figures, figures=FIGURE_DESCRIPTIONS,
                                     results_dir=paths["results"], runs_root=paths["runs"],
                                     papermill_dir=paths["papermill"], jobs=2, progress=False)
    return {"study": study, **paths}


@pytest.fixture
def one_thread():
    """One torch thread for small ops: as fast, and immune to stalls when other processes hold the other cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Under pytest-xdist (`-n 2 --dist loadfile`, the default in pyproject.toml) each worker process is one of the 2
# cores, with one torch thread, and each test file runs on one worker, so its fixtures are built once (the
# session-wide smoke study is used by tests/test_study.py only). (`--dist loadgroup` does not group with pytest 9.)
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def codebook_cache(tmp_path, monkeypatch):
    """Each test builds its lc codebooks into its own cache directory (returned: where the files land)."""
    monkeypatch.setenv("PQSTUDY_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "codebooks"


# The files that take longest, longest first (quiet, 2 cores, 2026-11-27): pytest-xdist hands files out in collection
# order (`--no-loadscope-reorder` in pyproject.toml; its default orders by number of tests, which sent the smoke study
# out two thirds of the way through), so the longest start first and the short ones fill in beside them.
SLOW_FILES = ("test_study.py", "test_runner.py", "test_train.py", "test_weights_install.py", "test_distributed.py",
              "test_notebooks.py", "test_quantizer_family.py", "test_figures.py")


# The files whose outcome rests on float rounding: trainings judged by a threshold or against another process or a
# recorded reference, code searches that near ties could flip. `.ci/run` runs them (`pytest -m numerics`, about 1 min)
# a second time one instruction-set level below the machine's own (tests/isa.py), so a test that passes only on the
# CPU it was written on fails before it lands.
NUMERICS_FILES = ("test_behaviour.py", "test_classifier.py", "test_distributed.py", "test_distributed_generation.py",
                  "test_train.py", "test_generation_ar.py", "test_generation_diffusion.py", "test_losses.py",
                  "test_quantizers.py", "test_quantizer_family.py", "test_nearest_code.py", "test_pq_batched.py",
                  "test_metrics_image.py", "test_sample_quality.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: the rest keep their order
    for item in items:
        if item.path.name in NUMERICS_FILES:
            item.add_marker(pytest.mark.numerics)


def pytest_configure(config):
    config.addinivalue_line("markers", "real_weights: uses the networks installed by `pqstudy weights install`")
    config.addinivalue_line("markers", "numerics: rests on float rounding; CI runs it again at another instruction set")


@pytest.fixture(autouse=True)
def _no_host_weights(request, tmp_path_factory, monkeypatch):
    """Tests see no reference-network weights (the metrics are missing with a reason, quickly) unless marked
    ``real_weights``: results then do not depend on what the host has installed."""
    if request.node.get_closest_marker("real_weights") is None:
        monkeypatch.setenv("PQSTUDY_WEIGHTS_DIR", str(tmp_path_factory.mktemp("no-weights")))


@pytest.fixture(scope="session")
def installed_weights():
    """The directory of `pqstudy weights install` with every converted network and both verified archives; skips
    where they are absent, fails instead under ``PQSTUDY_REQUIRE_WEIGHTS=1`` (CI, where setup installs them)."""
    import os

    from pqstudy.metrics import weights_install as wi

    directory = wi.weights_dir()
    manifest = wi.read_manifest(directory)
    archives = [directory / "archives" / a.filename for a in wi.ARCHIVES.values()]
    if set(manifest) != set(wi.CONVERTED) or not all(p.is_file() for p in archives):
        message = f"no installed reference networks in {directory}: run `pqstudy weights install`"
        if os.environ.get("PQSTUDY_REQUIRE_WEIGHTS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return directory


@pytest.fixture(scope="session")
def cifar_test():
    """The CIFAR-10 test split as uint8 (10000, 3, 32, 32), from ``$PQSTUDY_DATA_DIR`` or ``../shared/data``; skips
    where it is absent."""
    from pqstudy.config import DataConfig
    from pqstudy.data import load_dataset

    root = Path(os.environ.get("PQSTUDY_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (root / "cifar-10-batches-py").is_dir():
        pytest.skip(f"CIFAR-10 not at {root}")
    return load_dataset(DataConfig(name="cifar10", image_size=32, root=str(root)), "test").images
