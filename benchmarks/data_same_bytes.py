"""Check that ``pqstudy.data`` gives the same bytes as the single-file ``pqstudy/data.py`` of an earlier commit.

The old ``data.py`` and ``data_fingerprint.py`` are read with ``git show <base>:...`` and loaded as modules beside the
current package; each case loads the same dataset through both and compares images, length, name, size, sources and
the data fingerprint. CIFAR-10 cases run where the data root holds it (``PQSTUDY_DATA_DIR``), else are reported as
skipped. Exits 1 on any difference.

    PQSTUDY_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/data_same_bytes.py [--base 0b3526c]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import pqstudy.data as new
from pqstudy.config import DataConfig
from pqstudy.data import folder as new_folder

REPO = Path(__file__).resolve().parents[1]


def load_old(base: str, workdir: Path):
    """The base commit's ``pqstudy.data`` and ``pqstudy.data_fingerprint`` as modules ``old_data``, ``old_fp``."""
    modules = []
    sources = (("pqstudy/data.py", "old_data", None),
               ("pqstudy/data_fingerprint.py", "old_fp", ("from pqstudy.data import", "from old_data import")))
    for path, name, patch in sources:
        text = subprocess.run(["git", "show", f"{base}:{path}"], cwd=REPO, check=True, capture_output=True,
                              text=True).stdout
        if patch:
            text = text.replace(*patch)
        file = workdir / f"{name}.py"
        file.write_text(text)
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    old_data, old_fp = modules
    old_data.REPO_ROOT = REPO  # it sat one folder higher; the data root is resolved from the same checkout
    return old_data, old_fp


def write_folder(root: Path) -> None:
    """Images of mixed sizes and types: a split-by-subfolder tree and a hash-split tree; one corrupt file."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 6)):
        for i in range(n):
            h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
            img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            sub = root / "split" / split / f"class{i % 3}"
            sub.mkdir(parents=True, exist_ok=True)
            img.save(sub / f"{i:03d}.{'jpg' if i % 2 else 'png'}")
    (root / "split" / "train" / "corrupt.png").write_bytes(rng.bytes(200))
    for i in range(50):
        img = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
        (root / "hashed" / f"g{i % 4}").mkdir(parents=True, exist_ok=True)
        img.save(root / "hashed" / f"g{i % 4}" / f"{i:03d}.png")
    for split, sub in (("train", "train"), ("test", "val")):
        for i in range(5):
            img = Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8))
            (root / "imagenet" / sub / "n0").mkdir(parents=True, exist_ok=True)
            img.save(root / "imagenet" / sub / "n0" / f"{split}{i}.JPEG", format="JPEG")


def same(old_ds, new_ds) -> str:
    """'' when equal, else what differs."""
    diffs = []
    for attr in ("name", "image_size", "sources"):
        if getattr(old_ds, attr) != getattr(new_ds, attr):
            diffs.append(f"{attr} {getattr(old_ds, attr)!r} != {getattr(new_ds, attr)!r}")
    if len(old_ds) != len(new_ds):
        diffs.append(f"len {len(old_ds)} != {len(new_ds)}")
    elif (old_ds.images is None) != (new_ds.images is None):
        diffs.append("one in memory, one lazy")
    else:
        idx = torch.arange(len(old_ds))
        if not torch.equal(old_ds.get_batch(idx), new_ds.get_batch(idx)):
            diffs.append("images differ")
    return "; ".join(diffs)


def compare(old_data, old_fp, cfg: DataConfig, splits, seeds, label: str) -> int:
    """The number of differences between old and new for ``cfg`` (fingerprint, then each split and seed)."""
    env = os.environ.pop("PQSTUDY_DATA_DIR", None) if cfg.root else None  # data.root counts only without the env var
    try:
        try:
            old_print = old_fp.data_fingerprint(cfg)
        except old_data.DatasetNotFoundError as err:
            print(f"SKIP  {label}: {err}"[:200])
            return 0
        new_print = new.data_fingerprint(cfg)
        failures = int(old_print != new_print)
        print(f"{'DIFF' if failures else 'OK  '}  {label} fingerprint {new_print[:16]}")
        for split in splits:
            for seed in seeds:
                new_ds = new.load_dataset(cfg, split, seed)
                diff = same(old_data.load_dataset(cfg, split, seed), new_ds)
                print(f"{'DIFF' if diff else 'OK  '}  {label} {split} seed={seed} n={len(new_ds)} {diff}")
                failures += bool(diff)
        return failures
    finally:
        if env is not None:
            os.environ["PQSTUDY_DATA_DIR"] = env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="0b3526c", help="the commit whose pqstudy/data.py is the reference")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # both sides warn alike (unknown provenance, skipped files); bytes are compared
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_data, old_fp = load_old(args.base, tmp)
        write_folder(tmp / "imgs")
        cases = [
            (DataConfig(name="cifar10", train_limit=512, download=False), ("train", "test"), (0,)),
            (DataConfig(name="cifar10", train_limit=512, image_size=16, download=False), ("train", "test"), (0,)),
            (DataConfig(name="photos"), ("train", "test"), (0, 1)),
            (DataConfig(name="photos", image_size=96, train_limit=100), ("train", "test"), (0,)),
            (DataConfig(name=f"folder:{tmp / 'imgs' / 'split'}", image_size=32), ("train", "test"), (0,)),
            (DataConfig(name=f"folder:{tmp / 'imgs' / 'split'}", image_size=24, train_limit=7), ("train",), (0,)),
            (DataConfig(name=f"folder:{tmp / 'imgs' / 'hashed'}", image_size=16), ("train", "test"), (0,)),
            (DataConfig(name="imagenet", root=str(tmp / "imgs"), image_size=32), ("train", "test"), (0,)),
        ]
        lazy = [(DataConfig(name=f"folder:{tmp / 'imgs' / 'split'}", image_size=32), ("train", "test"), (0,))]
        for eager_max, group in ((None, cases), (0, lazy)):
            patches = contextlib.ExitStack()
            if eager_max is not None:  # decode on access on both sides
                for module in (old_data, new_folder):
                    patches.callback(setattr, module, "EAGER_MAX_FILES", module.EAGER_MAX_FILES)
                    module.EAGER_MAX_FILES = eager_max
            with patches:
                for cfg, splits, seeds in group:
                    label = f"{cfg.name.replace(str(tmp), '<tmp>')} size={cfg.image_size} limit={cfg.train_limit}"
                    label += " (lazy)" if eager_max is not None else ""
                    failures += compare(old_data, old_fp, cfg, splits, seeds, label)
    print(f"{failures} difference(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
