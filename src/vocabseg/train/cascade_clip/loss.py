"""Cascade-CLIP's training loss: per-class sigmoid focal (x100) + dice on the final mask logits.

The official ``SegLossPlus`` (mask_weight 100, dice_weight 1), written for mask targets:

- focal: a one-hot target over *all* K channels at *every* pixel. Unlabelled pixels (255 in
  the official label maps; here: pixels in no target mask, padding included) are negatives of
  every class, not ignored. Mean over pixels, summed over the B x K maps, divided by
  ``num_masks``.
- dice: only the (image, class present) pairs, ``1 - (2 sum(p t) + 1) / (sum p + sum t + 1)``,
  summed, divided by ``num_masks``.
- ``num_masks``: distinct classes of the batch (after pseudo-labelling), summed over ranks
  and divided by the world size, at least 1.

No auxiliary losses: the official head never returns intermediate predictions.

Gradient accumulation: the trainer weights micro-batches by their target classes counted before
the forward pass. Pseudo-labelled classes (transductive) exist only after it, so there the
normaliser is the official one without accumulation (``accum_steps = 1``, any number of
processes) and an approximation with it.

Padding: the released VOC transductive config inherits ``seg_pad_val=255``; the repository's
``voc12_st_512x512.py`` pads labels with 200, which the official loss indexes as a class
channel (IndexError). Here padding is always "no mask", i.e. what 255 does.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vocabseg.losses.maskformer import sigmoid_focal_loss
from vocabseg.losses.set_criterion import _num_masks_per_rank, dice_loss
from vocabseg.train.cascade_clip.pseudo_labels import with_pseudo_labels

Targets = list[dict[str, torch.Tensor]]


def one_hot_targets(targets: Targets, num_classes: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """[B, K, H, W] float: 1 where a pixel belongs to the class's target mask, 0 elsewhere."""
    out = torch.zeros((len(targets), num_classes, *size), device=device)
    for b, target in enumerate(targets):
        if target["labels"].numel():
            out[b].index_put_((target["labels"],), target["masks"].to(out.dtype), accumulate=True)
    return out.clamp_(max=1)  # a class given twice (two masks) is still one


class CascadeCriterion(nn.Module):
    """Focal + dice of ``CascadeOutput.pred_masks`` against semantic mask targets.

    ``forward`` returns the unweighted ``loss_mask`` (focal) and ``loss_dice``;
    :meth:`weighted_total` is the training objective. Targets holding ``unseen_pixels``
    (transductive training) get pseudo-labels from the prediction first.
    """

    def __init__(self, *, mask_weight: float = 100.0, dice_weight: float = 1.0):
        super().__init__()
        self.weight_dict = {"loss_mask": mask_weight, "loss_dice": dice_weight}
        self.last_targets: Targets | None = None  # what the last call compared against (tests, debugging)

    def forward(self, outputs: Any, targets: Targets, *, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """Unweighted losses; ``generator`` is unused (no sampling).

        Args:
            outputs: has ``pred_masks`` [B, K, H, W] logits at the target size.
            targets: per image ``labels`` [N] (channels < K) and ``masks`` [N, H, W] bool.
        """
        logits = outputs.pred_masks.float()  # [B, K, H, W]: the loss in float32 under autocast too
        targets = with_pseudo_labels(logits, targets)
        self.last_targets = targets
        batch, classes = logits.shape[:2]
        size = (logits.shape[2], logits.shape[3])
        num_masks = _num_masks_per_rank(targets, device=logits.device)  # target classes (one mask each)
        dense = one_hot_targets(targets, classes, size, logits.device)  # [B, K, H, W]
        focal = sigmoid_focal_loss(logits.flatten(2).flatten(0, 1), dense.flatten(2).flatten(0, 1), num_masks)
        present = [(b, t["labels"]) for b, t in enumerate(targets)]
        pred = torch.cat([logits[b, labels] for b, labels in present]).flatten(1)  # [M, H*W]
        gt = torch.cat([t["masks"] for t in targets]).flatten(1).to(pred.dtype)  # [M, H*W]
        return {"loss_mask": focal, "loss_dice": dice_loss(pred, gt, num_masks)}

    def weighted_total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """``mask_weight x focal + dice_weight x dice``."""
        return self.weight_dict["loss_mask"] * losses["loss_mask"] + self.weight_dict["loss_dice"] * losses["loss_dice"]


def build_cascade_criterion(config: Any, loss: Any) -> CascadeCriterion:
    """The criterion from a training preset's ``loss`` section (``mask_weight`` = focal weight)."""
    return CascadeCriterion(mask_weight=loss.mask_weight, dice_weight=loss.dice_weight)
