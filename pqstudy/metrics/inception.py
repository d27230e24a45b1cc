"""The InceptionV3 network of FID/KID (torch-fidelity's 2048-d pool-feature extractor), built without its weights.

One home for the architecture: :mod:`pqstudy.metrics.distribution` loads the real weights into it and
:mod:`pqstudy.metrics.weights_convert` reads its state-dict layout to convert the registry archive.
"""

from __future__ import annotations

import io

import torch
from torch import nn

from pqstudy.offline import no_network

FEATURE_LAYER = "2048"
EXTRACTOR_NAME = "inception-v3-compat"  # torch-fidelity's registry name for this extractor
_RANDOM_MARKER = "__pqstudy_random_init__"


def inception_skeleton() -> nn.Module:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (2048-d pool features) with seeded He-initialised weights.

    torch-fidelity loads its weights inside ``__init__`` with ``torch.load(weights_only=False)``, which would run
    code from a pickle; here that load is handed a marker (an in-memory file) that makes it a no-op, and the real
    weights are loaded afterwards by :func:`load_inception` with ``weights_only=True``. Same architecture, resize
    and normalisation. With random weights it is the test-only switch; its values are not FID/KID.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            if _RANDOM_MARKER in state_dict:
                return None
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    buffer = io.BytesIO()
    torch.save({_RANDOM_MARKER: True}, buffer)
    buffer.seek(0)
    with no_network(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        extractor = _Skeleton(EXTRACTOR_NAME, [FEATURE_LAYER], feature_extractor_weights_path=buffer)
        for module in extractor.modules():  # He init, so activations neither vanish nor saturate
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return extractor
