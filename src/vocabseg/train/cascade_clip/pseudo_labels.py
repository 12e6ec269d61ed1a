"""Transductive self-training: pseudo-labels for the pixels annotated with an unseen class.

The official transductive recipe (``self_training=True``) keeps the annotation of seen classes
and forgets *which* unseen class a pixel has: it only knows the pixel is one of them. Each such
pixel gets the unseen class the current model scores highest there (sigmoid of the detached mask
logits, seen classes excluded). Pixels that are unlabelled or padding stay unlabelled.

Targets here are per image ``{"labels": [N] int64 class channels, "masks": [N, H, W] bool}``
plus, in transductive training, ``"unseen_pixels": [H, W] bool`` (pixels of any unseen class)
and ``"pseudo_classes": [U] int64`` (the channels a pseudo-label may take, ascending).
"""
from __future__ import annotations

import torch

UNSEEN_PIXELS = "unseen_pixels"
PSEUDO_CLASSES = "pseudo_classes"
Targets = list[dict[str, torch.Tensor]]


@torch.no_grad()
def pseudo_label_map(pred_masks: torch.Tensor, pseudo_classes: torch.Tensor) -> torch.Tensor:
    """The best unseen class of every pixel.

    As the official head: ``sigmoid(logits)``, every other channel set to -1, argmax over all
    channels (ties go to the lowest channel).

    Args:
        pred_masks: [K, H, W] mask logits of one image.
        pseudo_classes: [U] channels that may be chosen (U >= 1).

    Returns:
        [H, W] int64 channel indices, each one of ``pseudo_classes``.
    """
    scores = torch.full_like(pred_masks, -1.0, dtype=torch.float32)  # [K, H, W]
    scores[pseudo_classes] = pred_masks[pseudo_classes].float().sigmoid()
    return scores.argmax(dim=0)


def with_pseudo_labels(pred_masks: torch.Tensor, targets: Targets) -> Targets:
    """Targets where each image's unseen pixels become masks of their pseudo-labelled classes.

    Images without ``unseen_pixels`` (inductive training) are returned unchanged.

    Args:
        pred_masks: [B, K, H, W] mask logits (detached here), at the targets' size.
        targets: per image, see the module docstring.
    """
    out = []
    for logits, target in zip(pred_masks, targets):
        unseen = target.get(UNSEEN_PIXELS)
        if unseen is None or not bool(unseen.any()):  # note: a device sync per image
            out.append({"labels": target["labels"], "masks": target["masks"]})
            continue
        labels = pseudo_label_map(logits.detach(), target[PSEUDO_CLASSES])  # [H, W]
        present = torch.unique(labels[unseen])  # [P] pseudo classes that won a pixel, ascending
        pseudo_masks = (labels[None] == present[:, None, None]) & unseen[None]  # [P, H, W]
        out.append({"labels": torch.cat([target["labels"], present]),
                    "masks": torch.cat([target["masks"], pseudo_masks])})
    return out
