import torch

from vocabseg.models.ovseg.region_policy import plan_regions


def _probs(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows)  # [Q, K + 1], void last


def test_duplicates_share_the_surest_crop_and_void_sends_none():
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[0, :5] = True  # rows 0-4
    masks[1, :5] = True
    masks[1, 5, 0] = True  # IoU with 0: 50 / 51 > 0.9
    masks[2, 5:] = True  # disjoint
    masks[3, :5] = True  # a duplicate too, but void-dominated
    probs = _probs([[0.5, 0.2, 0.3], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4], [0.01, 0.01, 0.98]])
    plan = plan_regions(probs, masks, torch.ones(4, dtype=torch.bool))
    assert plan.sent.tolist() == [False, True, True, False]  # 1 is surer than 0 (0.8 vs 0.5)
    assert plan.source.tolist() == [1, 1, 2, 1]  # 3 reuses the sent crop it overlaps most


def test_void_proposals_reuse_the_most_overlapping_sent_crop_or_none():
    """A void-dominated query takes the CLIP scores of the sent mask with the largest IoU; -1 if it touches none."""
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[0, :4] = True  # rows 0-3
    masks[1, 6:] = True  # rows 6-9
    masks[2, 3:8] = True  # void: overlaps 0 by 1 row (IoU 10/80), 1 by 2 rows (IoU 20/70)
    masks[3, 4:6] = True  # void: rows 4-5, touches neither sent mask
    probs = _probs([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.02, 0.03, 0.95], [0.03, 0.02, 0.95]])
    plan = plan_regions(probs, masks, torch.ones(4, dtype=torch.bool), void_threshold=0.9)
    assert plan.sent.tolist() == [True, True, False, False]
    assert plan.source.tolist() == [0, 1, 1, -1]


def test_distinct_masks_all_send_and_invalid_queries_never():
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[0, :3], masks[1, 3:] = True, True
    valid = torch.tensor([True, True, False])
    plan = plan_regions(_probs([[0.6, 0.4], [0.5, 0.5], [0.9, 0.1]]), masks, valid)
    assert plan.sent.tolist() == [True, True, False] and plan.source.tolist() == [0, 1, -1]
    none = plan_regions(_probs([[0.6, 0.4]] * 3), masks, torch.zeros(3, dtype=torch.bool))
    assert not none.sent.any() and (none.source == -1).all()


def test_ious_count_pixels_in_float32_under_bf16_autocast():
    """303 of 379 pixels shared: IoU 0.7995, two crops. In bf16 the 303 would round to 304 (IoU 0.804), one."""
    flat = torch.zeros(2, 400, dtype=torch.bool)
    flat[0, :303], flat[1, :379] = True, True
    probs = _probs([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plan = plan_regions(probs, flat.view(2, 20, 20), torch.ones(2, dtype=torch.bool), iou_threshold=0.8)
    assert plan.sent.tolist() == [True, True] and plan.source.tolist() == [0, 1]
