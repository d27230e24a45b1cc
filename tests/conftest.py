import json
import sys

import pytest


@pytest.fixture(scope="module")
def pqstudy_kernel(tmp_path_factory):
    """A ``pqstudy`` Jupyter kernel spec running this interpreter (one torch thread: the cores are shared), found
    before any user-registered one, for tests that execute notebooks with papermill."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "pqstudy"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "pqstudy", "language": "python",
                                                     "env": {"OMP_NUM_THREADS": "1"}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        yield


@pytest.fixture
def one_thread():
    """One torch thread for small ops: as fast, and immune to stalls when other processes hold the other cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    config.addinivalue_line("markers", "real_weights: uses the networks installed by `pqstudy weights install`")


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
