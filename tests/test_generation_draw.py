"""pqstudy.generation.draw: a CPU generator serves tensors on another device (a GPU model trains and samples from
the run's CPU generator). Without a GPU here, the "other device" is ``meta``: torch accepts a CPU generator there
without drawing from it, which is how a draw made on the tensors' device would show."""

from __future__ import annotations

import pytest
import torch

from pqstudy.generation import draw


@pytest.mark.parametrize("fn,reference", [(draw.randn, torch.randn), (draw.rand, torch.rand)])
def test_a_draw_for_another_device_comes_from_the_generator(fn, reference):
    g, same = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = fn((4, 5), generator=g, device="meta")
    assert out.device.type == "meta" and out.shape == (4, 5)
    expected = reference((4, 5), generator=same)  # the generator advanced as a CPU draw advances it
    assert torch.equal(g.get_state(), same.get_state())
    assert torch.equal(fn((4, 5), generator=g, device="cpu"), reference((4, 5), generator=same))
    assert expected.shape == (4, 5)


def test_multinomial_is_torchs_on_the_same_device():
    probs = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    g, same = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(draw.multinomial(probs, generator=g), torch.multinomial(probs, 1, generator=same))
    assert torch.equal(g.get_state(), same.get_state())


def test_without_a_generator_the_draw_is_on_the_target_device():
    assert draw.randn((2,), generator=None, device="cpu").shape == (2,)
    assert draw.rand((2,), generator=None, device="meta").device.type == "meta"
