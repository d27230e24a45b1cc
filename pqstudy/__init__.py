"""pqstudy: a reproducible study toolkit for quantised image autoencoders."""

from pqstudy import tv_compat

tv_compat.apply()  # before anything imports torchvision (lpips, torch-fidelity, open_clip)

__version__ = "0.1.0"
