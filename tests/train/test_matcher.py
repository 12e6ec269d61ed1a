"""Tests for vocabseg.losses.matcher."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vocabseg.losses.matcher import HungarianMatcher, batch_dice_cost, batch_sigmoid_ce_cost

NUM_CLASSES = 4  # K; logits have K + 1 columns


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _matcher(num_points: int = 64) -> HungarianMatcher:
    return HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=num_points)


def _random_batch(num_targets: list[int], *, queries: int = 6, size: int = 16, seed: int = 0):
    g = _gen(seed)
    outputs = {
        "pred_logits": torch.randn(len(num_targets), queries, NUM_CLASSES + 1, generator=g),
        "pred_masks": torch.randn(len(num_targets), queries, size // 4, size // 4, generator=g),
    }
    targets = [
        {
            "labels": torch.randint(NUM_CLASSES, (n,), generator=g),
            "masks": torch.rand(n, size, size, generator=g) > 0.5,
        }
        for n in num_targets
    ]
    return outputs, targets


def test_sigmoid_ce_cost_matches_pairwise_loss():
    logits, targets = torch.randn(3, 20), (torch.rand(4, 20) > 0.5).float()
    expected = torch.tensor(
        [[F.binary_cross_entropy_with_logits(q, t).item() for t in targets] for q in logits]
    )
    assert torch.allclose(batch_sigmoid_ce_cost(logits, targets), expected, atol=1e-5)


def test_dice_cost_matches_pairwise_formula():
    logits, targets = torch.randn(3, 20), (torch.rand(4, 20) > 0.5).float()
    probs = logits.sigmoid()
    expected = torch.tensor(
        [[1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1) for t in targets] for p in probs]
    )
    assert torch.allclose(batch_dice_cost(logits, targets), expected, atol=1e-6)


def test_perfect_predictions_are_matched_to_their_targets():
    outputs, targets = _random_batch([3], queries=6, size=16)
    masks, labels = targets[0]["masks"], targets[0]["labels"]
    outputs["pred_masks"] = torch.randn(1, 6, 16, 16, generator=_gen(1))  # target resolution
    owner = [4, 0, 2]  # query that predicts target n perfectly: logits +-10 in/out of its mask
    for n, q in enumerate(owner):
        outputs["pred_masks"][0, q] = masks[n].float() * 20 - 10
        outputs["pred_logits"][0, q] = F.one_hot(labels[n], NUM_CLASSES + 1).float() * 10
    pred_idx, tgt_idx = _matcher(num_points=256)(outputs, targets, generator=_gen())[0]
    assert dict(zip(tgt_idx.tolist(), pred_idx.tolist())) == dict(enumerate(owner))


def test_class_cost_is_negative_probability():
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=0.0, cost_dice=0.0, num_points=8)
    logits = torch.randn(5, NUM_CLASSES + 1)
    labels = torch.tensor([2, 0, 2])
    cost = matcher.cost_matrix(
        logits=logits, masks=torch.randn(5, 4, 4), labels=labels,
        target_masks=torch.ones(3, 8, 8), coords=torch.rand(1, 8, 2),
    )
    assert torch.allclose(cost, -logits.softmax(-1)[:, labels])


def test_batched_equals_per_image():
    outputs, targets = _random_batch([2, 0, 5, 1], queries=6)
    batched = _matcher()(outputs, targets, generator=_gen(7))
    # Images consume the generator in order, so a shared generator replays the batch.
    g = _gen(7)
    for b, target in enumerate(targets):
        single = {k: v[b : b + 1] for k, v in outputs.items()}
        (pred_idx, tgt_idx), = _matcher()(single, [target], generator=g)
        assert torch.equal(pred_idx, batched[b][0]) and torch.equal(tgt_idx, batched[b][1])


def test_indices_are_int64_with_min_length():
    outputs, targets = _random_batch([2, 9], queries=6)
    indices = _matcher()(outputs, targets, generator=_gen())
    for (pred_idx, tgt_idx), n in zip(indices, [2, 9]):
        assert pred_idx.dtype == tgt_idx.dtype == torch.int64
        assert len(pred_idx) == len(tgt_idx) == min(6, n)
        assert len(set(pred_idx.tolist())) == len(pred_idx)


@pytest.mark.parametrize("num_targets", [[0], [0, 0], [3, 0, 2]])
def test_empty_targets(num_targets):
    outputs, targets = _random_batch(num_targets)
    indices = _matcher()(outputs, targets, generator=_gen())
    for (pred_idx, tgt_idx), n in zip(indices, num_targets):
        assert len(pred_idx) == len(tgt_idx) == n
        assert pred_idx.dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_finite_float32_costs(dtype):
    outputs, targets = _random_batch([3])
    # Large logits overflow half precision arithmetic if costs were not upcast.
    cost = _matcher().cost_matrix(
        logits=(outputs["pred_logits"][0] * 30).to(dtype),
        masks=(outputs["pred_masks"][0] * 30).to(dtype),
        labels=targets[0]["labels"],
        target_masks=targets[0]["masks"],
        coords=torch.rand(1, 64, 2),
    )
    assert cost.dtype == torch.float32 and torch.isfinite(cost).all()
    low = {k: v.to(dtype) for k, v in outputs.items()}
    assert len(_matcher()(low, targets, generator=_gen())[0][0]) == 3


def test_costs_stay_float32_under_autocast():
    outputs, targets = _random_batch([3])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        cost = _matcher().cost_matrix(
            logits=outputs["pred_logits"][0], masks=outputs["pred_masks"][0],
            labels=targets[0]["labels"], target_masks=targets[0]["masks"], coords=torch.rand(1, 64, 2),
        )
    assert cost.dtype == torch.float32


def test_no_grad_and_unequal_target_sizes():
    outputs, targets = _random_batch([2, 2], size=16)
    targets[1]["masks"] = targets[1]["masks"][:, :12, :10]  # padded to 16 x 16 internally
    outputs = {k: v.requires_grad_() for k, v in outputs.items()}
    cost = _matcher().cost_matrix(
        logits=outputs["pred_logits"][0], masks=outputs["pred_masks"][0],
        labels=targets[0]["labels"], target_masks=targets[0]["masks"], coords=torch.rand(1, 64, 2),
    )
    assert not cost.requires_grad
    assert len(_matcher()(outputs, targets)) == 2


def test_all_zero_costs_rejected():
    with pytest.raises(ValueError):
        HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0, num_points=4)
