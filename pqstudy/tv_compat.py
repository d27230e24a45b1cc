"""Make ``import torchvision`` work when its compiled ops do not load.

The registry's torchvision 0.28.0 is a CUDA build; on a CPU-only torch its ``_C`` extension fails to load and the
import dies on ``operator torchvision::nms does not exist``. lpips, torch-fidelity and open_clip all import
torchvision, so pqstudy defines the two operator schemas (``nms``, ``qnms``) that torchvision's meta registrations
need. The shim does nothing where the real ops load, and nothing once torchvision has been imported.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import torch

_LIB = None  # keeps the schema definitions alive for the life of the process
APPLIED = False


def _has_op(qualname: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(qualname, "")
        return True
    except RuntimeError:
        return False


def _load_real_ops() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to fix
    for location in spec.submodule_search_locations:
        for path in glob.glob(os.path.join(location, "_C*.so")) + glob.glob(os.path.join(location, "_C*.pyd")):
            try:
                torch.ops.load_library(path)
            except (OSError, RuntimeError):
                pass
    return _has_op("torchvision::nms")


def apply() -> bool:
    """Define the missing schemas if needed. Returns True if the shim was applied."""
    global _LIB, APPLIED
    if APPLIED or "torchvision" in sys.modules or _has_op("torchvision::nms") or _load_real_ops():
        return APPLIED
    _LIB = torch.library.Library("torchvision", "DEF")
    _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIB.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    APPLIED = True
    return True
