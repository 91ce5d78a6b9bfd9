"""Cross-attention decoder: shapes, no q/k/v bias, attention over the memory."""

from __future__ import annotations

import pytest
import torch

from aqa.models.decoder import CrossAttention, Decoder, DecoderConfig


@pytest.mark.parametrize("batch,nq,nk", [(1, 5, 80), (3, 5, 80), (3, 2, 7)])
def test_decoder_shapes(batch, nq, nk):
    dec = Decoder()
    out = dec(torch.randn(batch, nq, 64), torch.randn(batch, nk, 64))
    assert out.shape == (batch, nq, 64)
    assert len(dec.blocks) == 3


def test_no_qkv_bias_and_heads():
    attn = CrossAttention(64, 8)
    assert attn.q.bias is None and attn.k.bias is None and attn.v.bias is None
    assert attn.proj.bias is not None
    with pytest.raises(ValueError):
        CrossAttention(64, 7)


def test_memory_order_does_not_matter_but_content_does():
    torch.manual_seed(0)
    dec = Decoder(DecoderConfig(depth=2)).eval()
    q, kv = torch.randn(2, 5, 64), torch.randn(2, 16, 64)
    out = dec(q, kv)
    torch.testing.assert_close(out, dec(q, kv.flip(1)))  # no positions in the memory
    assert not torch.allclose(out, dec(q, torch.randn(2, 16, 64)))


def test_samples_are_independent():
    dec = Decoder().eval()
    q, kv = torch.randn(3, 5, 64), torch.randn(3, 80, 64)
    torch.testing.assert_close(dec(q, kv)[1:2], dec(q[1:2], kv[1:2]))
