"""Set criterion for mask classification (Mask2Former / FC-CLIP losses).

For every set of predictions (final and each auxiliary decoder layer) queries
are matched to targets, then three losses are computed:

- `loss_ce`: cross-entropy over K+1 classes; unmatched queries target the
  "no object" class K, whose weight is `eos_coef`.
- `loss_mask`: sigmoid BCE and `loss_dice`: dice, both on importance-sampled
  points of the matched masks, normalised by the number of target masks.

The number of classes K follows the logits of each call, so one criterion
serves any vocabulary.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vocabseg.losses.matcher import HungarianMatcher, Indices
from vocabseg.losses.point_sampling import mask_uncertainty, pad_masks, point_sample, sample_uncertain_points

__all__ = ["SetCriterion", "build_criterion", "dice_loss", "sigmoid_ce_loss"]

Targets = list[dict[str, torch.Tensor]]


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor | float) -> torch.Tensor:
    """Binary cross-entropy averaged over points, summed over masks.

    Args:
        logits: Mask logits of shape [M, P].
        targets: Binary targets of shape [M, P], float.
        num_masks: Normaliser (target masks per rank).

    Returns:
        Scalar loss.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # [M, P]
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor | float) -> torch.Tensor:
    """Dice loss with +1 smoothing, summed over masks.

    Args:
        logits: Mask logits of shape [M, P].
        targets: Binary targets of shape [M, P], float.
        num_masks: Normaliser (target masks per rank).

    Returns:
        Scalar loss.
    """
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)  # [M]
    denominator = probs.sum(-1) + targets.sum(-1)  # [M]
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


class SetCriterion(nn.Module):
    """Hungarian-matched classification and point-sampled mask losses.

    `forward` returns unweighted losses keyed "loss_ce", "loss_mask",
    "loss_dice", plus the same with suffix `_{i}` for `outputs["aux_outputs"][i]`.
    `weighted_total` turns them into the training objective.
    """

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        matcher: HungarianMatcher,
        weight_dict: dict[str, float],
        eos_coef: float,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
    ):
        """Creates the criterion.

        Args:
            num_classes: Classes K, excluding "no object". None infers K from
                each call's logits (open vocabulary); an int makes a call whose
                logits disagree raise.
            matcher: Assigns queries to targets.
            weight_dict: Weight of every loss key, auxiliary ones included.
            eos_coef: Cross-entropy weight of the "no object" class.
            num_points: Points per mask for the mask losses.
            oversample_ratio: Candidates drawn per point for importance sampling.
            importance_sample_ratio: Fraction of points taken where the
                prediction is most uncertain.
        """
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def forward(
        self,
        outputs: Mapping | Any,
        targets: Targets,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Computes all losses.

        Args:
            outputs: "pred_logits" [B, Q, K+1], "pred_masks" [B, Q, h, w] mask
                logits, and optionally "aux_outputs": a list of dicts with the
                same two keys, one per intermediate prediction; as a mapping or
                as a model output object with those attributes.
            targets: One dict per image with "labels" int64 [N_i] in [0, K) and
                "masks" [N_i, H, W] (bool or float), padded like the images.
            generator: Random source for matching and point sampling, on the
                device of the predictions.

        Returns:
            Unweighted float32 scalar losses.
        """
        if not isinstance(outputs, Mapping):  # a family's output dataclass
            outputs = {"pred_logits": outputs.pred_logits, "pred_masks": outputs.pred_masks,
                       "aux_outputs": outputs.aux_outputs}
        num_masks = _num_masks_per_rank(targets, device=outputs["pred_logits"].device)
        losses = self._losses(outputs, targets, num_masks=num_masks, generator=generator)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_losses = self._losses(aux, targets, num_masks=num_masks, generator=generator)
            losses.update({f"{name}_{i}": value for name, value in aux_losses.items()})
        return losses

    def weighted_total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of losses times their `weight_dict` weights.

        Args:
            losses: Output of `forward`.

        Returns:
            Scalar training objective.

        Raises:
            KeyError: A loss has no weight, e.g. the decoder returns more
                auxiliary outputs than the criterion was built for.
        """
        unweighted = sorted(set(losses) - set(self.weight_dict))
        if unweighted:
            raise KeyError(f"losses without a weight in weight_dict: {unweighted}; check dec_layers")
        terms = [losses[name] * self.weight_dict[name] for name in losses]
        total = terms[0]
        for term in terms[1:]:  # left to right, as sum() adds them
            total = total + term
        return total

    def _losses(
        self, outputs: Mapping, targets: Targets, *, num_masks: torch.Tensor, generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """Matches one set of predictions and computes its three losses."""
        indices = self.matcher(outputs, targets, generator=generator)
        loss_ce = self.loss_labels(logits=outputs["pred_logits"], targets=targets, indices=indices)
        mask_losses = self.loss_masks(
            masks=outputs["pred_masks"], targets=targets, indices=indices, num_masks=num_masks, generator=generator
        )
        return {"loss_ce": loss_ce, **mask_losses}

    def loss_labels(self, *, logits: torch.Tensor, targets: Targets, indices: Indices) -> torch.Tensor:
        """Weighted cross-entropy; unmatched queries target "no object".

        Args:
            logits: Class logits of shape [B, Q, K+1].
            targets: Per-image dicts with "labels" [N_i].
            indices: Matching from the matcher.

        Returns:
            Scalar loss, the weighted mean over all B*Q queries.
        """
        num_classes = self._num_classes(logits)
        batch_idx, query_idx = _matched_queries(indices)
        matched_labels = torch.cat([t["labels"][tgt] for t, (_, tgt) in zip(targets, indices)])
        # Every query targets "no object" (index K) unless it was matched.
        target_classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
        target_classes[batch_idx, query_idx] = matched_labels.to(logits.device)
        weight = self._class_weight(num_classes, device=logits.device)  # [K+1]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            # cross_entropy wants the class dimension second: [B, K+1, Q].
            return F.cross_entropy(logits.float().transpose(1, 2), target_classes, weight)

    def loss_masks(
        self,
        *,
        masks: torch.Tensor,
        targets: Targets,
        indices: Indices,
        num_masks: torch.Tensor | float,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """BCE and dice on importance-sampled points of the matched masks.

        Predictions stay at their low resolution and targets at full
        resolution; both are read at the same normalised points, chosen where
        the prediction is most uncertain.

        Args:
            masks: Mask logits of shape [B, Q, h, w].
            targets: Per-image dicts with "masks" [N_i, H, W].
            indices: Matching from the matcher.
            num_masks: Normaliser (target masks per rank).
            generator: Random source for the points.

        Returns:
            "loss_mask" and "loss_dice", float32 scalars.
        """
        batch_idx, query_idx = _matched_queries(indices)
        if batch_idx.numel() == 0:
            # No target in the batch: zero, but still attached to the graph so
            # every parameter gets a (zero) gradient, as DDP expects.
            zero = masks.float().sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        with torch.autocast(device_type=masks.device.type, enabled=False):
            pred = masks[batch_idx.to(masks.device), query_idx.to(masks.device)].float()[:, None]  # [M, 1, h, w]
            with torch.no_grad():
                coords = sample_uncertain_points(
                    pred,
                    mask_uncertainty,
                    num_points=self.num_points,
                    oversample_ratio=self.oversample_ratio,
                    importance_sample_ratio=self.importance_sample_ratio,
                    generator=generator,
                )  # [M, P, 2]
                gt = _matched_target_masks(targets, indices).to(pred)[:, None]  # [M, 1, H, W]
                point_targets = point_sample(gt, coords).squeeze(1)  # [M, P]
            point_logits = point_sample(pred, coords).squeeze(1)  # [M, P]
            return {
                "loss_mask": sigmoid_ce_loss(point_logits, point_targets, num_masks),
                "loss_dice": dice_loss(point_logits, point_targets, num_masks),
            }

    def _num_classes(self, logits: torch.Tensor) -> int:
        """K from the logits, checked against `num_classes` when that is fixed."""
        num_classes = logits.shape[-1] - 1
        if self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(
                f"pred_logits has {num_classes} classes + no-object but the criterion was built for "
                f"{self.num_classes}; pass num_classes=None to follow the vocabulary"
            )
        return num_classes

    def _class_weight(self, num_classes: int, *, device: torch.device) -> torch.Tensor:
        """Cross-entropy class weights [K+1]: 1 for every class, eos_coef for "no object".

        Built per call rather than stored as a buffer because K changes with
        the vocabulary.
        """
        weight = torch.ones(num_classes + 1, device=device)
        weight[-1] = self.eos_coef
        return weight

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, eos_coef={self.eos_coef}, num_points={self.num_points}, "
            f"oversample_ratio={self.oversample_ratio}, importance_sample_ratio={self.importance_sample_ratio}, "
            f"weight_dict={self.weight_dict}"
        )


def build_criterion(
    *,
    num_classes: int | None = None,
    class_weight: float = 2.0,
    mask_weight: float = 5.0,
    dice_weight: float = 5.0,
    no_object_weight: float = 0.1,
    dec_layers: int = 10,
    num_points: int = 12544,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
) -> SetCriterion:
    """FC-CLIP's criterion with its COCO panoptic defaults.

    The matcher uses the loss weights as its cost weights and the same number
    of points, as the official training does.

    Args:
        num_classes: Fixed K, or None to follow each call's logits.
        class_weight: Weight of "loss_ce" (and of the class matching cost).
        mask_weight: Weight of "loss_mask" (and of the BCE matching cost).
        dice_weight: Weight of "loss_dice" (and of the dice matching cost).
        no_object_weight: Cross-entropy weight of the "no object" class.
        dec_layers: Official DEC_LAYERS: 9 decoder layers plus the prediction
            from the learnable queries, i.e. `dec_layers - 1` aux outputs.
        num_points: Points per mask for matching and mask losses (112 * 112).
        oversample_ratio: Candidates per point for importance sampling.
        importance_sample_ratio: Fraction of points chosen by uncertainty.

    Returns:
        The criterion.
    """
    matcher = HungarianMatcher(
        cost_class=class_weight, cost_mask=mask_weight, cost_dice=dice_weight, num_points=num_points
    )
    base = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
    weight_dict = dict(base)
    for i in range(dec_layers - 1):
        weight_dict.update({f"{name}_{i}": weight for name, weight in base.items()})
    return SetCriterion(
        num_classes=num_classes,
        matcher=matcher,
        weight_dict=weight_dict,
        eos_coef=no_object_weight,
        num_points=num_points,
        oversample_ratio=oversample_ratio,
        importance_sample_ratio=importance_sample_ratio,
    )


def _matched_queries(indices: Indices) -> tuple[torch.Tensor, torch.Tensor]:
    """(image index, query index) of every matched query, each [M]."""
    batch_idx = torch.cat([torch.full_like(pred, b) for b, (pred, _) in enumerate(indices)])
    query_idx = torch.cat([pred for pred, _ in indices])
    return batch_idx, query_idx


def _matched_target_masks(targets: Targets, indices: Indices) -> torch.Tensor:
    """Matched target masks [M, H, W], zero-padded to the batch's largest size.

    Row order follows `_matched_queries`, so row m is the target of query m.
    """
    height = max(t["masks"].shape[-2] for t in targets)
    width = max(t["masks"].shape[-1] for t in targets)
    matched = [
        pad_masks(t["masks"][tgt.to(t["masks"].device)], height=height, width=width)
        for t, (_, tgt) in zip(targets, indices)
    ]
    return torch.cat(matched)


def _num_masks_per_rank(targets: Targets, *, device: torch.device) -> torch.Tensor:
    """Mask-loss normaliser: target masks in the global batch / world size, at least 1.

    Averaging over ranks (rather than using the local count) gives every rank
    the same normaliser, so gradients average correctly under DDP.
    """
    num_masks = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num_masks)
        num_masks = num_masks / dist.get_world_size()
    return num_masks.clamp(min=1)
