"""MaskFormer's set criterion (OVSeg's proposal losses): focal + dice on whole masks.

OVSeg trains its proposal generator with the MaskFormer recipe, not Mask2Former's:

- matching costs on every pixel of the prediction grid (targets nearest-downsampled to
  it), with a sigmoid *focal* mask cost instead of BCE on sampled points;
- ``loss_mask`` is the sigmoid focal loss (alpha 0.25, gamma 2) and ``loss_dice`` the dice
  loss, both on the predictions bilinearly upsampled to the padded target size.

Classification (``loss_ce`` with a down-weighted "no object") and the deep supervision
are those of :class:`~vocabseg.losses.set_criterion.SetCriterion`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from vocabseg.losses.matcher import HungarianMatcher, Indices, batch_dice_cost
from vocabseg.losses.point_sampling import pad_masks
from vocabseg.losses.set_criterion import SetCriterion, Targets, dice_loss

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor | float) -> torch.Tensor:
    """RetinaNet's focal loss averaged over pixels, summed over masks, divided by ``num_masks``.

    Args:
        logits: [M, P] mask logits.
        targets: [M, P] binary float targets.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # [M, P]
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).mean(1).sum() / num_masks


def batch_focal_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[Q, N] mean focal loss of every (prediction [Q, P], target [N, P]) pair."""
    prob = logits.sigmoid()
    pos = FOCAL_ALPHA * (1 - prob) ** FOCAL_GAMMA * F.binary_cross_entropy_with_logits(
        logits, torch.ones_like(logits), reduction="none")  # [Q, P]: cost where the target is 1
    neg = (1 - FOCAL_ALPHA) * prob ** FOCAL_GAMMA * F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction="none")  # [Q, P]: cost where the target is 0
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


class MaskFormerMatcher(HungarianMatcher):
    """Hungarian matching on whole masks at the prediction resolution (focal + dice + class costs)."""

    def __init__(self, *, cost_class: float, cost_mask: float, cost_dice: float):
        super().__init__(cost_class=cost_class, cost_mask=cost_mask, cost_dice=cost_dice, num_points=0)

    @torch.no_grad()
    def forward(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]], *,
                generator: torch.Generator | None = None) -> Indices:
        """Per image ``(pred_idx, tgt_idx)``; ``generator`` is unused (no sampling)."""
        indices = []
        for b, target in enumerate(targets):
            if target["labels"].numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            with torch.autocast(device_type=outputs["pred_masks"].device.type, enabled=False):
                masks = outputs["pred_masks"][b].float()  # [Q, h, w]
                small = F.interpolate(target["masks"][:, None].to(masks), size=masks.shape[-2:], mode="nearest")
                flat_pred, flat_tgt = masks.flatten(1), small[:, 0].flatten(1)  # [Q, h*w], [N, h*w]
                cost = (self.cost_class * -outputs["pred_logits"][b].float().softmax(-1)[:, target["labels"]]
                        + self.cost_mask * batch_focal_cost(flat_pred, flat_tgt)
                        + self.cost_dice * batch_dice_cost(flat_pred, flat_tgt))  # [Q, N]
            pred_idx, tgt_idx = linear_sum_assignment(cost.cpu().numpy())  # note: a device sync
            indices.append((torch.as_tensor(pred_idx, dtype=torch.int64), torch.as_tensor(tgt_idx, dtype=torch.int64)))
        return indices


class MaskFormerCriterion(SetCriterion):
    """SetCriterion whose mask losses are focal + dice on the upsampled whole masks."""

    def loss_masks(self, *, masks: torch.Tensor, targets: Targets, indices: Indices, num_masks: torch.Tensor | float,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``loss_mask`` (focal) and ``loss_dice`` of the matched masks [B, Q, h, w] against the padded targets."""
        batch_idx = torch.cat([torch.full_like(pred, b) for b, (pred, _) in enumerate(indices)]).to(masks.device)
        query_idx = torch.cat([pred for pred, _ in indices]).to(masks.device)
        if batch_idx.numel() == 0:
            zero = masks.float().sum() * 0.0  # attached to the graph: DDP wants every gradient
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        height = max(t["masks"].shape[-2] for t in targets)
        width = max(t["masks"].shape[-1] for t in targets)
        gt = torch.cat([pad_masks(t["masks"][tgt.to(t["masks"].device)], height=height, width=width)
                        for t, (_, tgt) in zip(targets, indices)])  # [M, H, W]
        with torch.autocast(device_type=masks.device.type, enabled=False):
            pred = F.interpolate(masks[batch_idx, query_idx].float()[:, None], size=(height, width),
                                 mode="bilinear", align_corners=False)[:, 0]  # [M, H, W]
            pred, gt_flat = pred.flatten(1), gt.flatten(1).to(pred)
            return {"loss_mask": sigmoid_focal_loss(pred, gt_flat, num_masks),
                    "loss_dice": dice_loss(pred, gt_flat, num_masks)}


def build_maskformer_criterion(*, class_weight: float = 1.0, mask_weight: float = 20.0, dice_weight: float = 1.0,
                               no_object_weight: float = 0.1, dec_layers: int = 6) -> MaskFormerCriterion:
    """OVSeg's criterion (official defaults: CE 1, focal 20, dice 1, no object 0.1); costs = loss weights.

    Args:
        dec_layers: decoder layers; the first ``dec_layers - 1`` give the auxiliary outputs.
    """
    matcher = MaskFormerMatcher(cost_class=class_weight, cost_mask=mask_weight, cost_dice=dice_weight)
    base = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
    weight_dict = dict(base)
    for i in range(dec_layers - 1):
        weight_dict.update({f"{name}_{i}": weight for name, weight in base.items()})
    return MaskFormerCriterion(matcher=matcher, weight_dict=weight_dict, eos_coef=no_object_weight, num_points=0,
                               oversample_ratio=1.0, importance_sample_ratio=0.0)
