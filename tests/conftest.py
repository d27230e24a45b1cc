import json
import sys

import pytest


@pytest.fixture(scope="module")
def pqstudy_kernel(tmp_path_factory):
    """This checkout's Jupyter kernel (``pqstudy.study.kernel.kernel_name()``, the name the sweep runner asks for)
    as a spec running this interpreter (one torch thread: the cores are shared), found before any installed one,
    for tests that execute notebooks with papermill. Yields the kernel's name."""
    from pqstudy.study.kernel import kernel_name

    name = kernel_name()
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / name
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": f"pqstudy (tests, {name})",
                                                     "language": "python", "env": {"OMP_NUM_THREADS": "1"}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        yield name


@pytest.fixture
def one_thread():
    """One torch thread for small ops: as fast, and immune to stalls when other processes hold the other cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
