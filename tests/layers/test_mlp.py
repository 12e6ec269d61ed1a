"""Tests for vocabseg.model.heads."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vocabseg.model.heads import MLP, classify_embeddings, mask_pool, synonym_index

# 2-D toy CLIP space: class 0 has two synonyms (+x, +y), class 1 one (-x); void is -y.
CLASSIFIER = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
SYNONYMS = [2, 1]


def _logits(embedding, log_scale: float) -> torch.Tensor:
    return classify_embeddings(torch.tensor(embedding).view(1, 1, 2), CLASSIFIER, torch.tensor(log_scale), SYNONYMS)[0, 0]


def test_classify_takes_max_over_synonyms_and_puts_void_last():
    # (3, 4) normalises to (0.6, 0.8): cosines +x 0.6, +y 0.8, -x -0.6, -y -0.8; scale 10
    logits = _logits([3.0, 4.0], math.log(10.0))
    torch.testing.assert_close(logits, torch.tensor([8.0, -6.0, -8.0]))


def test_classify_is_invariant_to_embedding_norm():
    torch.testing.assert_close(_logits([30.0, 40.0], math.log(10.0)), _logits([0.3, 0.4], math.log(10.0)))


def test_logit_scale_is_clamped_at_100():
    torch.testing.assert_close(_logits([3.0, 4.0], math.log(1000.0)), torch.tensor([80.0, -60.0, -80.0]))
    torch.testing.assert_close(_logits([3.0, 4.0], math.log(1000.0)), _logits([3.0, 4.0], math.log(100.0)))


def test_classify_batched_shape():
    embeddings = torch.randn(2, 5, 2)
    assert classify_embeddings(embeddings, CLASSIFIER, torch.tensor(0.0), SYNONYMS).shape == (2, 5, 3)


def test_synonym_index_pads_with_the_first_synonym():
    assert synonym_index([2, 1, 3]).tolist() == [[0, 1, 0], [2, 2, 2], [3, 4, 5]]
    assert synonym_index([1, 1]).tolist() == [[0], [1]]


def test_mask_pool_averages_inside_and_gives_zero_for_empty_masks():
    features = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]])[None]  # [1, C=2, 2, 2]
    masks = torch.full((1, 3, 2, 2), -1.0)
    masks[0, 0, 0, :] = 1.0  # top row
    masks[0, 1, :, 1] = 0.0  # logit 0 is outside: empty
    masks[0, 2] = 2.0  # whole map
    pooled = mask_pool(features, masks)
    expected = torch.tensor([[[1.5, 15.0], [0.0, 0.0], [2.5, 25.0]]])
    torch.testing.assert_close(pooled, expected)


def test_mask_pool_resizes_masks_to_the_features():
    features = torch.arange(16.0).view(1, 1, 4, 4)
    masks = torch.tensor([[[[5.0, -5.0], [-5.0, -5.0]]]])  # 2x2 -> 4x4: the top-left quadrant
    torch.testing.assert_close(mask_pool(features, masks), torch.tensor([[[(0 + 1 + 4 + 5) / 4]]]))


def test_mask_pool_passes_no_gradient_to_the_masks():
    features = torch.randn(1, 3, 4, 4, requires_grad=True)
    masks = torch.randn(1, 2, 4, 4, requires_grad=True)
    mask_pool(features, masks).sum().backward()
    assert masks.grad is None
    assert features.grad is not None


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_mlp_layer_count_and_widths(num_layers):
    mlp = MLP(4, 8, 2, num_layers)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == num_layers
    assert linears[0].in_features == 4 and linears[-1].out_features == 2
    assert all(m.out_features == 8 for m in linears[:-1])


def test_mlp_has_relu_between_layers_but_not_after_the_last():
    mlp = MLP(1, 1, 1, 2)
    with torch.no_grad():
        for layer, weight in zip(mlp.layers, (1.0, -1.0)):
            layer.weight.fill_(weight)
            layer.bias.zero_()
    # -relu(x): negative outputs survive the last layer, negative hidden values do not
    torch.testing.assert_close(mlp(torch.tensor([[3.0], [-2.0]])), torch.tensor([[-3.0], [0.0]]))
