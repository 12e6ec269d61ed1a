"""Tests for vocabseg.clip.text: the frozen text tower and the identity of its weights."""
from __future__ import annotations

import open_clip
import torch

from vocabseg.clip.text import clip_text_encoder, encode_tokens, text_tower_fingerprint

PROMPTS = ["a", "a photo of a dog.", "a very long prompt about a small red bicycle leaning on a wall"]


def test_encode_tokens_truncated_equals_open_clip_full_context(tiny_backbones, backbone_kind):
    clip = tiny_backbones[backbone_kind].clip
    tokens = open_clip.tokenize(PROMPTS)  # [3, 77], zero padded after end-of-text
    assert len({int(t) for t in tokens.argmax(-1)}) == 3  # three different lengths
    ours = encode_tokens(clip, tokens)
    with torch.no_grad():
        reference = clip.encode_text(tokens)
    assert ours.shape == (3, 32)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_text_encoder_tokenizes_and_names_the_weights(tiny_backbones):
    clip = tiny_backbones["convnext"].clip
    encoder = clip_text_encoder(clip, clip_model_name="tiny_convnext", custom_clip=True)
    features = encoder.encode(PROMPTS)
    assert features.dtype == torch.float32 and features.shape == (3, 32)
    torch.testing.assert_close(features, encode_tokens(clip, open_clip.tokenize(PROMPTS)))
    assert encoder.encoder_id == f"tiny_convnext:{text_tower_fingerprint(clip)}"


def test_fingerprint_changes_with_the_text_weights_only(make_backbone):
    clip = make_backbone("convnext", seed=0).clip
    before = text_tower_fingerprint(clip)
    assert len(before) == 16 and before == text_tower_fingerprint(make_backbone("convnext", seed=0).clip)
    with torch.no_grad():
        clip.visual.trunk.stem[0].weight.add_(1.0)
    assert text_tower_fingerprint(clip) == before  # the image tower does not embed text
    with torch.no_grad():
        clip.ln_final.weight.add_(1e-3)
    assert text_tower_fingerprint(clip) != before
