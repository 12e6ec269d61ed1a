"""Tests for vocabseg.clip.prefix_tree: shared-prefix text encoding equals the padded path."""
from __future__ import annotations

import open_clip
import pytest
import torch

from vocabseg.clip.prefix_tree import build_prefix_tree, encode_prefix_tree, supports_prefix_sharing, token_sequences
from vocabseg.clip.text import BF16_SUFFIX, clip_text_encoder, encode_tokens

PROMPTS = [
    "a photo of a dog.", "a photo of a dog in the scene", "a photo of a small dog.", "a photo of a cat.",
    "There is a traffic cone in the scene.", "a", "a photo of a dog.",  # a duplicate: one leaf for both
]


def test_tree_merges_shared_prefixes_and_orders_nodes_by_depth():
    tree = build_prefix_tree([(7, 1, 2, 9), (7, 1, 3, 9), (7, 4, 9), (7, 1, 2, 9)])
    # depth 0: {7}; 1: {1, 4}; 2: {2, 3, 9}; 3: {9 after 2, 9 after 3}
    assert tree.depth_starts == [0, 1, 3, 6, 8]
    assert tree.tokens.tolist() == [7, 1, 4, 2, 3, 9, 9, 9]
    assert tree.positions.tolist() == [0, 1, 1, 2, 2, 2, 3, 3]
    assert tree.paths[3].tolist() == [[0, 1, 3, 6], [0, 1, 4, 7]]
    assert tree.paths[2].tolist() == [[0, 1, 3], [0, 1, 4], [0, 2, 5]]
    assert tree.leaves.tolist() == [6, 7, 5, 6]  # the repeated sequence ends at the same node


def test_token_sequences_end_at_each_end_of_text():
    tokens = torch.tensor([[5, 3, 9, 0, 0], [5, 9, 0, 0, 0]])  # 9 plays end-of-text: the largest id
    assert token_sequences(tokens) == [(5, 3, 9), (5, 9)]


def test_tree_encoding_equals_padded_encoding(tiny_backbones, backbone_kind):
    clip = tiny_backbones[backbone_kind].clip
    assert supports_prefix_sharing(clip)
    tokens = open_clip.tokenize(PROMPTS)
    tree = build_prefix_tree(token_sequences(tokens))
    assert len(tree.tokens) < int((tokens.argmax(-1) + 1).sum())  # shared prefixes run once
    torch.testing.assert_close(encode_prefix_tree(clip, tree), encode_tokens(clip, tokens), atol=1e-5, rtol=1e-5)


def test_towers_that_are_not_plain_causal_blocks_are_not_tree_encoded(make_backbone):
    clip = make_backbone("convnext", seed=1).clip
    clip.attn_mask = None  # bidirectional: a prefix's states would depend on what follows it
    assert not supports_prefix_sharing(clip)
    other = make_backbone("convnext", seed=1).clip
    other.transformer.resblocks[0].ln_1_kv = torch.nn.LayerNorm(8)  # a cross-attention block
    assert not supports_prefix_sharing(other)


def test_encoder_without_prefix_sharing_uses_padded_batches(tiny_backbones, monkeypatch):
    monkeypatch.setattr("vocabseg.clip.text.supports_prefix_sharing", lambda clip: False)
    clip = tiny_backbones["convnext"].clip
    encoder = clip_text_encoder(clip, clip_model_name="tiny_convnext", custom_clip=True)
    assert encoder.encode_bf16 is None and encoder.for_precision(True) == (encoder.encode, encoder.encoder_id)
    assert torch.equal(encoder.encode(PROMPTS), encode_tokens(clip, open_clip.tokenize(PROMPTS)))


@pytest.mark.parametrize("fast", [False, True])
def test_fast_text_encoder_is_bf16_close_and_keyed_apart(tiny_backbones, fast):
    clip = tiny_backbones["convnext"].clip
    encoder = clip_text_encoder(clip, clip_model_name="tiny_convnext", custom_clip=True)
    encode, encoder_id = encoder.for_precision(fast)
    assert encoder_id.endswith(BF16_SUFFIX) == fast
    features = encode(PROMPTS)
    reference = encode_tokens(clip, open_clip.tokenize(PROMPTS))
    assert features.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(features, reference)
    assert cosine.min() > (0.99 if fast else 0.999999)
    if fast:
        assert not torch.equal(features, encoder.encode(PROMPTS))  # really another precision
        assert next(clip.parameters()).dtype == torch.float32  # the model's own tower is untouched
