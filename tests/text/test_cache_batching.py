"""Text-classifier batching: each distinct prompt encoded once, prompts sharing a prefix batched together."""
from __future__ import annotations

import torch

from vocabseg.text.cache import _encode_in_batches


def _fake_encoder(calls: list[list[str]]):
    def encode(prompts: list[str]) -> torch.Tensor:  # [N, 2]: a function of each prompt alone
        calls.append(list(prompts))
        return torch.tensor([[float(len(p)), float(sum(map(ord, p)) % 97)] for p in prompts])
    return encode


def test_duplicates_are_encoded_once_and_rows_keep_the_input_order():
    prompts = ["a photo of a cat.", "a dog", "a photo of a cat.", "there is a big red bus in the scene", "a dog"]
    calls: list[list[str]] = []
    feats = _encode_in_batches(prompts, _fake_encoder(calls), batch_size=2, progress=False)
    encoded = [p for call in calls for p in call]
    assert sorted(encoded) == sorted(set(prompts))  # three distinct prompts, each once
    torch.testing.assert_close(feats, _fake_encoder([])(prompts))


def test_batches_keep_prompts_that_share_a_prefix_together():
    names = ["cat", "traffic cone", "dog"]
    templates = ["a photo of a {}.", "there is a {} in the scene", "a photo of a {} in the scene"]
    prompts = [t.format(n) for t in templates for n in names]  # template-major, as no order helps
    calls: list[list[str]] = []
    _encode_in_batches(prompts, _fake_encoder(calls), 3, progress=False)
    # token-id order ("dog" has a smaller id than "cat", "." than "in") keeps both prompts of a name
    # that share the opening "a photo of a" in one batch
    assert calls[0] == ["a photo of a dog.", "a photo of a dog in the scene", "a photo of a cat."]
    assert all(p.startswith("there is a") for p in calls[-1])
