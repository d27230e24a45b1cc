"""PatchGAN discriminator (pix2pix), as used by taming-transformers, PQGAN and VQGAN-LC.

Each output logit judges one overlapping patch of the input. ``n_layers`` stride-2 convs set the receptive field
(70×70 pixels for 3 layers); a 32×32 input gives (B, 1, 2, 2) logits with 3 layers. Inputs need at least
3 · 2 ** n_layers pixels a side (24 for 3 layers, 12 for VQGAN-LC's 2) to survive the halvings and two 4×4 convs.
"""

from __future__ import annotations

from torch import Tensor, nn


def weights_init(module: nn.Module) -> None:
    """taming's init: conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class NLayerDiscriminator(nn.Module):
    """conv4×4/2 → LReLU, (n_layers − 1) × [conv4×4/2 → BN → LReLU], one stride-1 such block, a 1-channel conv."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = ndf
        for n in range(1, n_layers + 1):
            ch_out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last widening block keeps the resolution
            layers += [
                nn.Conv2d(ch, ch_out, kernel_size=4, stride=stride, padding=1, bias=False),  # BN supplies the shift
                nn.BatchNorm2d(ch_out),
                nn.LeakyReLU(0.2),
            ]
            ch = ch_out
        layers.append(nn.Conv2d(ch, 1, kernel_size=4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.apply(weights_init)

    def forward(self, x: Tensor) -> Tensor:
        """(B, input_nc, H, W) images → (B, 1, h, w) patch logits."""
        return self.main(x)
