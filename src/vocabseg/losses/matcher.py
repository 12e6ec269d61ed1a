"""Hungarian matching between mask predictions and ground-truth segments.

Each image is matched on its own: a cost matrix [num_queries, num_targets] is
built from the class probability and two mask costs evaluated on random points,
then solved with `scipy.optimize.linear_sum_assignment`. Queries left unmatched
are supervised as "no object" by the criterion.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from vocabseg.errors import ConfigError
from vocabseg.losses.point_sampling import pad_masks, point_sample

__all__ = ["HungarianMatcher", "batch_dice_cost", "batch_sigmoid_ce_cost"]

Indices = list[tuple[torch.Tensor, torch.Tensor]]


def batch_sigmoid_ce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy between every prediction and every target.

    Args:
        logits: Mask logits of shape [Q, P].
        targets: Binary targets of shape [N, P], float.

    Returns:
        Costs of shape [Q, N]: entry (q, n) is the BCE of prediction q against
        target n, averaged over the P points.
    """
    # Per-point loss if the target were 1 (pos) or 0 (neg); the pair cost is
    # then linear in the target, so every pair comes from two matmuls.
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = pos @ targets.T + neg @ (1 - targets).T  # [Q, N]
    return cost / logits.shape[1]


def batch_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss (with +1 smoothing) between every prediction and every target.

    Args:
        logits: Mask logits of shape [Q, P].
        targets: Binary targets of shape [N, P], float.

    Returns:
        Costs of shape [Q, N], each `1 - (2|p*t| + 1) / (|p| + |t| + 1)`.
    """
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T  # [Q, N]
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]  # [Q, N]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets, solved per image.

    The cost of pairing query q with target n is
    `cost_class * -p_q(label_n) + cost_mask * BCE + cost_dice * dice`, with the
    mask terms evaluated on `num_points` uniform points shared by all queries
    and targets of the image. Costs are computed in float32 whatever the input
    dtype, with autocast disabled.
    """

    def __init__(self, *, cost_class: float, cost_mask: float, cost_dice: float, num_points: int):
        """Creates the matcher.

        Args:
            cost_class: Weight of the classification cost.
            cost_mask: Weight of the sigmoid BCE mask cost.
            cost_dice: Weight of the dice mask cost.
            num_points: Uniform points per image on which mask costs are computed.
        """
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ConfigError("at least one matching cost must be non-zero")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
        *,
        generator: torch.Generator | None = None,
    ) -> Indices:
        """Matches each image's queries to its targets.

        Args:
            outputs: "pred_logits" [B, Q, K+1] (last column is "no object") and
                "pred_masks" [B, Q, h, w] mask logits.
            targets: One dict per image with "labels" int64 [N_i] and "masks"
                [N_i, H, W] (bool or float). Masks of different sizes are
                zero-padded bottom/right to the largest, like the image batch.
            generator: Random source for the points, on the device of the masks.

        Returns:
            Per image, `(pred_idx, tgt_idx)` int64 CPU tensors of equal length
            min(Q, N_i); query `pred_idx[k]` is matched to target `tgt_idx[k]`.
        """
        height, width = _padded_size(targets)
        indices = []
        for b, target in enumerate(targets):
            masks = outputs["pred_masks"][b]  # [Q, h, w]
            # One set of points per image, shared by predictions and targets:
            # [1, P, 2]. Drawn even without targets so the random stream stays
            # in step with the official implementation.
            coords = torch.rand(1, self.num_points, 2, device=masks.device, generator=generator)
            if target["labels"].numel() == 0:
                indices.append(_empty_match())
                continue
            cost = self.cost_matrix(
                logits=outputs["pred_logits"][b],
                masks=masks,
                labels=target["labels"],
                target_masks=pad_masks(target["masks"], height=height, width=width),
                coords=coords,
            )
            # Note: CPU-GPU sync point; the assignment is solved on the CPU.
            pred_idx, tgt_idx = linear_sum_assignment(cost.cpu().numpy())
            indices.append((_as_index(pred_idx), _as_index(tgt_idx)))
        return indices

    @torch.no_grad()
    def cost_matrix(
        self,
        *,
        logits: torch.Tensor,
        masks: torch.Tensor,
        labels: torch.Tensor,
        target_masks: torch.Tensor,
        coords: torch.Tensor,
    ) -> torch.Tensor:
        """Matching cost of one image.

        Args:
            logits: Class logits of shape [Q, K+1].
            masks: Mask logits of shape [Q, h, w].
            labels: Target classes of shape [N], int64.
            target_masks: Target masks of shape [N, H, W], padded like the image.
            coords: Points of shape [1, P, 2], (x, y) in [0, 1], at which
                predicted and target masks are compared.

        Returns:
            Float32 costs of shape [Q, N].
        """
        with torch.autocast(device_type=masks.device.type, enabled=False):
            # Channels are the masks, so one grid_sample serves all of them.
            point_logits = point_sample(masks[None].float(), coords)[0]  # [Q, P]
            point_targets = point_sample(target_masks[None].to(point_logits), coords)[0]  # [N, P]
            # The 1 in "1 - p" is a constant, so -p ranks pairs the same way.
            cost_class = -logits.float().softmax(-1)[:, labels]  # [Q, N]
            cost_mask = batch_sigmoid_ce_cost(point_logits, point_targets)
            cost_dice = batch_dice_cost(point_logits, point_targets)
        return self.cost_class * cost_class + self.cost_mask * cost_mask + self.cost_dice * cost_dice

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}"
        )


def _padded_size(targets: list[dict[str, torch.Tensor]]) -> tuple[int, int]:
    """Largest mask height and width over the batch."""
    height = max((t["masks"].shape[-2] for t in targets), default=0)
    width = max((t["masks"].shape[-1] for t in targets), default=0)
    return height, width


def _as_index(array) -> torch.Tensor:
    """An index array from scipy as an int64 CPU tensor."""
    return torch.as_tensor(array, dtype=torch.int64)


def _empty_match() -> tuple[torch.Tensor, torch.Tensor]:
    """Match of an image without targets: no pairs."""
    empty = torch.empty(0, dtype=torch.int64)
    return empty, empty.clone()
