"""LPIPS through the ``lpips`` package, with backbone weights from local files only.

AlexNet is the evaluation network (what the papers report), VGG16 the training loss. ``lpips.LPIPS`` would fetch the
torchvision backbone from the network; here the trunk is built uninitialised and the torchvision ImageNet state dict
is loaded from the file :func:`pqstudy.metrics.weights.find_weights` finds (``alexnet-owt-7be5be79.pth`` /
``vgg16-397923af.pth`` in ``$TORCH_HOME/hub/checkpoints`` or ``$PQSTUDY_LPIPS_ALEX`` / ``$PQSTUDY_LPIPS_VGG``); the
linear layers come from the lpips package (``weights/v0.1/<net>.pth``). Missing weights give ``(None, reason)``,
never a randomly initialised network.
"""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from pqstudy.metrics.weights import find_weights, missing_reason
from pqstudy.offline import no_network

__all__ = ["LPIPS_NETS", "load_lpips", "lpips_distance"]

LPIPS_NETS = ("alex", "vgg")


def _backbone_state_to_lpips(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchvision ``features.<i>.<param>`` keys onto lpips' ``net.slice<k>.<i>.<param>`` trunk parameters.

    lpips keeps torchvision's layer indices inside its slices, so the index identifies the layer. Every trunk
    parameter must be covered; the classifier keys of the torchvision file are ignored.
    """
    targets = {}
    for key in model.net.state_dict():  # "slice1.0.weight"
        _slice, index, param = key.split(".", 2)
        targets[f"features.{index}.{param}"] = f"net.{key}"
    mapped = {targets[k]: v for k, v in state.items() if k in targets}
    absent = sorted(set(targets) - set(state))
    if absent:
        raise KeyError(f"backbone file lacks {len(absent)} trunk tensors, e.g. {absent[:3]}")
    return mapped


def _build(net: str, backbone_path: str | None, lin_path: str | None, seed: int = 0) -> nn.Module:
    import lpips

    with no_network(), warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation, from inside lpips
        torch.manual_seed(seed)  # deterministic initial values (overwritten when files are loaded)
        # pnet_rand=True: the trunk is built without weights (no download); pretrained=False: no implicit lin load
        model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
    if lin_path is not None:
        lin_state = torch.load(lin_path, map_location="cpu", weights_only=True)
        expected = {k for k in model.state_dict() if re.match(r"lin\d+\.", k)}  # lin0.model.1.weight, ...
        lin_missing, unexpected = sorted(expected - set(lin_state)), sorted(set(lin_state) - expected)
        if lin_missing or unexpected:
            raise KeyError(f"linear-layer file: missing {lin_missing[:3]}, unexpected {unexpected[:3]}")
        model.load_state_dict(lin_state, strict=False)
    if backbone_path is not None:
        state = torch.load(backbone_path, map_location="cpu", weights_only=True)
        model.load_state_dict(_backbone_state_to_lpips(model, state), strict=False)
    for name, module in list(model.named_modules()):  # lin dropout: would switch on if a parent calls .train()
        if isinstance(module, nn.Dropout):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Identity())
    model.requires_grad_(False)
    return model.eval()


def load_lpips(
    net: str = "alex", device: str | torch.device = "cpu", random_backbone: bool = False
) -> tuple[nn.Module | None, str | None]:
    """LPIPS v0.1 with ``net`` in ``("alex", "vgg")``: ``(module, None)``, or ``(None, one-line reason)``.

    The module takes two float images (B, 3, H, W) in [-1, 1] and returns (B, 1, 1, 1); it is in eval mode with
    ``requires_grad`` off (gradients still flow to the inputs, for the training loss) and has no dropout or batch
    norm left, so a parent module's ``.train()`` does not change its output.

    ``random_backbone=True`` is a test-only switch: the trunk keeps its seeded random initialisation (the packaged
    linear layers are used when present). Its values are not LPIPS and must never be reported as such.
    """
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {LPIPS_NETS}")
    backbone = find_weights(f"lpips_{net}")
    lin = find_weights(f"lpips_{net}_lin")
    if random_backbone:
        backbone_path, lin_path = None, lin.path
    else:
        reason = missing_reason("lpips" if net == "alex" else "lpips_vgg", [backbone, lin])
        if reason is not None:
            return None, reason
        backbone_path, lin_path = backbone.path, lin.path
    try:
        model = _build(net, backbone_path, lin_path)
    except Exception as exc:  # a corrupt or mismatched file: recorded, never raised
        first = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"lpips ({net}): failed to load {backbone_path or lin_path}: {type(exc).__name__}: {first}"
    return model.to(device), None


def lpips_distance(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image LPIPS (B,) for float images in [-1, 1]."""
    return model(x.float(), y.float()).flatten()
