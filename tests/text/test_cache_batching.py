"""Text-classifier batching: each distinct prompt encoded once, batches grouped by token count."""
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


def test_batches_group_prompts_of_similar_token_counts():
    short = ["a cat", "a dog", "a cow"]
    long = ["a photo of the large wooden kitchen table in the scene",
            "there is a small green plastic chair in the scene"]
    calls: list[list[str]] = []
    _encode_in_batches([long[0], short[0], long[1], short[1], short[2]], _fake_encoder(calls), 2, progress=False)
    assert set(calls[0]) <= set(short) and set(calls[-1]) <= set(long)
