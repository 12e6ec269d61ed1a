"""Tests for vocabseg.losses.set_criterion."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vocabseg.losses.matcher import HungarianMatcher
from vocabseg.losses.set_criterion import SetCriterion, build_criterion, dice_loss, sigmoid_ce_loss

BASE_KEYS = {"loss_ce", "loss_mask", "loss_dice"}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _criterion(*, num_classes: int | None = None, eos_coef: float = 0.1, num_aux: int = 0) -> SetCriterion:
    return build_criterion(num_classes=num_classes, no_object_weight=eos_coef, dec_layers=num_aux + 1, num_points=256)


def _random_batch(
    num_targets: list[int], *, num_classes: int = 4, queries: int = 5, size: int = 16, num_aux: int = 0, seed: int = 0
):
    g = _gen(seed)

    def prediction() -> dict[str, torch.Tensor]:
        return {
            "pred_logits": torch.randn(len(num_targets), queries, num_classes + 1, generator=g),
            "pred_masks": torch.randn(len(num_targets), queries, size // 4, size // 4, generator=g),
        }

    outputs = prediction()
    if num_aux:
        outputs["aux_outputs"] = [prediction() for _ in range(num_aux)]
    targets = [
        {"labels": torch.randint(num_classes, (n,), generator=g), "masks": torch.rand(n, size, size, generator=g) > 0.5}
        for n in num_targets
    ]
    return outputs, targets


def _leaves(outputs: dict, dtype: torch.dtype = torch.float32) -> dict:
    return {k: v.to(dtype).requires_grad_() for k, v in outputs.items() if k != "aux_outputs"}


def test_loss_ce_matches_cross_entropy_with_hand_weight():
    criterion = _criterion(eos_coef=0.1)
    logits = torch.randn(2, 3, 5)  # K = 4
    targets = [{"labels": torch.tensor([2, 1])}, {"labels": torch.tensor([3])}]
    indices = [(torch.tensor([2, 0]), torch.tensor([1, 0])), (torch.tensor([1]), torch.tensor([0]))]
    loss = criterion.loss_labels(logits=logits, targets=targets, indices=indices)
    # Query 2 of image 0 gets label 1, query 0 label 2; image 1 query 1 label 3; the rest void (4).
    classes = torch.tensor([[2, 4, 1], [4, 3, 4]])
    weight = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.1])
    nll = -logits.log_softmax(-1).gather(-1, classes[..., None])[..., 0]
    assert torch.allclose(loss, (weight[classes] * nll).sum() / weight[classes].sum())
    assert torch.allclose(loss, F.cross_entropy(logits.reshape(-1, 5), classes.flatten(), weight))


def test_mask_losses_normalised_by_num_masks():
    logits, targets = torch.randn(3, 10), (torch.rand(3, 10) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum()
    assert torch.allclose(sigmoid_ce_loss(logits, targets, 4.0), bce / 4)
    perfect = targets * 40 - 20
    assert dice_loss(perfect, targets, 1.0) < 1e-6
    assert sigmoid_ce_loss(perfect, targets, 1.0) < 1e-6


def test_perfect_prediction_gives_near_zero_dice():
    size = 64
    outputs, targets = _random_batch([2], queries=4, size=size)
    masks = torch.zeros(2, size, size, dtype=torch.bool)
    masks[0, :, : size // 2] = True
    masks[1, :, size // 2 :] = True
    targets[0]["masks"] = masks
    outputs["pred_masks"] = torch.full((1, 4, size, size), -20.0)
    outputs["pred_masks"][0, 1] = masks[0].float() * 40 - 20
    outputs["pred_masks"][0, 3] = masks[1].float() * 40 - 20
    # Uniform points: importance sampling would concentrate them on the one-pixel
    # band where bilinear reads of the target are fractional.
    criterion = build_criterion(dec_layers=1, num_points=1024, importance_sample_ratio=0.0)
    assert criterion(outputs, targets, generator=_gen())["loss_dice"] < 0.02
    empty = dict(outputs, pred_masks=torch.full_like(outputs["pred_masks"], -20.0))
    assert criterion(empty, targets, generator=_gen())["loss_dice"] > 0.9


def test_forward_ce_uses_matcher_indices():
    criterion = _criterion()
    outputs, targets = _random_batch([2, 3])
    losses = criterion(outputs, targets, generator=_gen(5))
    indices = criterion.matcher(outputs, targets, generator=_gen(5))
    expected = criterion.loss_labels(logits=outputs["pred_logits"], targets=targets, indices=indices)
    assert torch.allclose(losses["loss_ce"], expected)


def test_deep_supervision_keys_and_weighted_total():
    criterion = _criterion(num_aux=2)
    outputs, targets = _random_batch([2, 1], num_aux=2)
    losses = criterion(outputs, targets, generator=_gen())
    expected = BASE_KEYS | {f"{k}_{i}" for k in BASE_KEYS for i in range(2)}
    assert set(losses) == expected
    total = sum(losses[k] * criterion.weight_dict[k] for k in losses)
    assert torch.allclose(criterion.weighted_total(losses), total)
    assert all(v.dtype == torch.float32 and v.ndim == 0 for v in losses.values())


def test_weighted_total_rejects_losses_without_weight():
    criterion = _criterion(num_aux=1)
    outputs, targets = _random_batch([2], num_aux=3)
    with pytest.raises(KeyError, match="loss_ce_2"):
        criterion.weighted_total(criterion(outputs, targets, generator=_gen()))


def test_build_criterion_defaults_follow_fcclip():
    criterion = build_criterion(num_classes=133)
    # DEC_LAYERS=10: 9 decoder layers + the learnable-query prediction -> 9 aux outputs.
    assert len(criterion.weight_dict) == 3 * 10
    assert criterion.weight_dict["loss_ce_8"] == 2.0 and "loss_ce_9" not in criterion.weight_dict
    assert criterion.weight_dict["loss_mask"] == criterion.weight_dict["loss_dice"] == 5.0
    assert (criterion.num_points, criterion.oversample_ratio, criterion.importance_sample_ratio) == (12544, 3.0, 0.75)
    assert criterion.eos_coef == 0.1
    matcher = criterion.matcher
    assert (matcher.cost_class, matcher.cost_mask, matcher.cost_dice, matcher.num_points) == (2.0, 5.0, 5.0, 12544)


@pytest.mark.parametrize("num_targets", [[0], [0, 0], [0, 3]])
def test_zero_target_images(num_targets):
    outputs, targets = _random_batch(num_targets, num_aux=1)
    leaves = _leaves(outputs)
    losses = _criterion(num_aux=1)(dict(leaves, aux_outputs=outputs["aux_outputs"]), targets, generator=_gen())
    assert all(torch.isfinite(v) for v in losses.values())
    if sum(num_targets) == 0:
        assert losses["loss_mask"] == 0 and losses["loss_dice"] == 0
        # All queries are void: plain (uniformly weighted) CE towards class K.
        logits = outputs["pred_logits"].reshape(-1, 5)
        void = torch.full((logits.shape[0],), 4)
        assert torch.allclose(losses["loss_ce"], F.cross_entropy(logits, void))
    _criterion(num_aux=1).weighted_total(losses).backward()
    assert leaves["pred_masks"].grad is not None and torch.isfinite(leaves["pred_masks"].grad).all()


def test_num_masks_is_total_targets_in_batch():
    outputs, targets = _random_batch([2, 3])
    criterion = _criterion()
    losses = criterion(outputs, targets, generator=_gen(4))
    # Replay the random stream: matching first, then the mask points.
    g = _gen(4)
    indices = criterion.matcher(outputs, targets, generator=g)
    state = g.get_state()
    kwargs = dict(masks=outputs["pred_masks"], targets=targets, indices=indices)
    by_five = criterion.loss_masks(**kwargs, num_masks=5.0, generator=g)
    by_one = criterion.loss_masks(**kwargs, num_masks=1.0, generator=g.set_state(state))
    for name in ("loss_mask", "loss_dice"):
        assert torch.allclose(losses[name], by_five[name])
        assert torch.allclose(by_one[name], 5 * by_five[name])


def test_num_masks_clamped_to_one():
    from vocabseg.losses.set_criterion import _num_masks_per_rank

    empty = [{"labels": torch.zeros(0, dtype=torch.int64)}]
    assert _num_masks_per_rank(empty, device=torch.device("cpu")) == 1
    assert _num_masks_per_rank(empty * 2 + [{"labels": torch.zeros(3)}], device=torch.device("cpu")) == 3


@pytest.mark.parametrize("num_classes", [3, 7])
def test_vocabulary_size_follows_logits(num_classes):
    criterion = _criterion()
    outputs, targets = _random_batch([2, 1], num_classes=num_classes)
    losses = criterion(outputs, targets, generator=_gen())
    assert torch.isfinite(losses["loss_ce"])


def test_fixed_num_classes_mismatch_raises():
    outputs, targets = _random_batch([1], num_classes=3)
    with pytest.raises(ValueError, match="num_classes=None"):
        _criterion(num_classes=5)(outputs, targets, generator=_gen())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_float32_losses_and_gradients(dtype):
    outputs, targets = _random_batch([2, 1])
    leaves = _leaves(outputs, dtype)
    criterion = _criterion()
    losses = criterion(leaves, targets, generator=_gen())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    criterion.weighted_total(losses).backward()
    for leaf in leaves.values():
        assert leaf.grad.dtype == dtype and torch.isfinite(leaf.grad.float()).all()


def test_autocast_losses_are_float32():
    outputs, targets = _random_batch([2, 1])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        losses = _criterion()(outputs, targets, generator=_gen())
    assert all(v.dtype == torch.float32 for v in losses.values())


def test_gradients_reach_logits_and_masks_of_every_layer():
    outputs, targets = _random_batch([2, 3], num_aux=2)
    leaves = _leaves(outputs)
    aux = [_leaves(a) for a in outputs["aux_outputs"]]
    criterion = _criterion(num_aux=2)
    criterion.weighted_total(criterion(dict(leaves, aux_outputs=aux), targets, generator=_gen())).backward()
    for pred in [leaves, *aux]:
        for leaf in pred.values():
            assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


def test_generator_makes_losses_deterministic():
    outputs, targets = _random_batch([2, 3], num_aux=1)
    first = _criterion(num_aux=1)(outputs, targets, generator=_gen(11))
    second = _criterion(num_aux=1)(outputs, targets, generator=_gen(11))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_unequal_target_sizes_are_padded():
    outputs, targets = _random_batch([2, 2], size=16)
    targets[0]["masks"] = targets[0]["masks"][:, :12, :14]
    losses = _criterion()(outputs, targets, generator=_gen())
    assert all(torch.isfinite(v) for v in losses.values())


def test_criterion_has_no_state():
    # K is per call, so no empty_weight buffer: nothing to save or mismatch.
    criterion = SetCriterion(
        matcher=HungarianMatcher(cost_class=1, cost_mask=1, cost_dice=1, num_points=16),
        weight_dict={"loss_ce": 1.0}, eos_coef=0.1, num_points=16, oversample_ratio=3.0, importance_sample_ratio=0.75,
    )
    assert criterion.state_dict() == {}
