"""Cascade-CLIP's loss and pseudo-labels against the official code's numbers, and by hand."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vocabseg.train.cascade_clip.loss import CascadeCriterion, one_hot_targets
from vocabseg.train.cascade_clip.pseudo_labels import pseudo_label_map, with_pseudo_labels

# Official SegLossPlus on one 512x512 crop (goldens made with the official code, see
# docs/dev/cascade_clip_official_pipeline.md): the 32x32 logits of the head (recovered exactly from the stored
# subsampled 512x512 logits), the label map and the label map the loss saw.
GOLDEN = Path(__file__).resolve().parents[2] / "goldens" / "cascade_clip_train_loss_voc.npz"
VOC_UNSEEN = list(range(15, 20))


def _golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


def _logits(golden: dict[str, np.ndarray], setting: str) -> torch.Tensor:
    """[1, K, 512, 512] mask logits: the head's 32x32 logits, bilinearly upsampled as the official."""
    coarse = torch.from_numpy(golden[f"{setting}_coarse_logits"]).double()[None]
    return F.interpolate(coarse, size=(512, 512), mode="bilinear", align_corners=False).float()


def _targets(labels: torch.Tensor, classes: list[int], **extra) -> list[dict[str, torch.Tensor]]:
    return [{"labels": torch.tensor(classes), "masks": torch.stack([labels == c for c in classes]), **extra}]


def _label_map(target: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    out = torch.full(size, 255)
    for label, mask in zip(target["labels"], target["masks"]):
        out[mask] = label
    return out


def test_inductive_loss_equals_the_official_loss():
    golden = _golden()
    seen_view = torch.from_numpy(golden["voc_inductive_label_after"].astype(np.int64))  # classes 0, 3; 255
    logits = _logits(golden, "voc_inductive")
    losses = CascadeCriterion()(SimpleNamespace(pred_masks=logits), _targets(seen_view, [0, 3]))
    assert 100 * float(losses["loss_mask"]) == pytest.approx(float(golden["voc_inductive_loss_mask"]), rel=1e-5)
    assert float(losses["loss_dice"]) == pytest.approx(float(golden["voc_inductive_loss_dice"]), rel=1e-5)


def test_transductive_pseudo_labels_and_loss_equal_the_official():
    golden = _golden()
    labels = torch.from_numpy(golden["label_in"].astype(np.int64))  # bands of classes 0, 3, 15, 19 and 255
    unseen = (labels >= 15) & (labels < 20)
    targets = _targets(labels, [0, 3], unseen_pixels=unseen, pseudo_classes=torch.tensor(VOC_UNSEEN))
    criterion = CascadeCriterion()
    losses = criterion(SimpleNamespace(pred_masks=_logits(golden, "voc_transductive")), targets)
    assert criterion.last_targets is not None
    seen_by_loss = _label_map(criterion.last_targets[0], (512, 512))
    assert torch.equal(seen_by_loss, torch.from_numpy(golden["voc_transductive_label_after"].astype(np.int64)))
    assert 100 * float(losses["loss_mask"]) == pytest.approx(float(golden["voc_transductive_loss_mask"]), rel=1e-5)
    assert float(losses["loss_dice"]) == pytest.approx(float(golden["voc_transductive_loss_dice"]), rel=1e-5)


def test_pseudo_labels_by_hand():
    # 4 classes, 0-1 seen, 2-3 unseen; a 2x3 image. Seen class 1 scores highest everywhere
    # but may not be chosen; among 2 and 3 the larger logit wins (3 on the right column).
    logits = torch.tensor([[[9.0, 9, 9], [9, 9, 9]],
                           [[8.0, 8, 8], [8, 8, 8]],
                           [[1.0, 1, 0], [1, 1, 0]],
                           [[0.0, 0, 2], [0, 0, 2]]])
    assert pseudo_label_map(logits, torch.tensor([2, 3])).tolist() == [[2, 2, 3], [2, 2, 3]]
    seen_mask = torch.tensor([[True, False, False], [False, False, False]])
    unseen = torch.tensor([[False, True, True], [False, False, False]])  # row 2: unlabelled
    target = {"labels": torch.tensor([1]), "masks": seen_mask[None],
              "unseen_pixels": unseen, "pseudo_classes": torch.tensor([2, 3])}
    out = with_pseudo_labels(logits[None], [target])[0]
    assert out["labels"].tolist() == [1, 2, 3]
    assert _label_map(out, (2, 3)).tolist() == [[1, 2, 3], [255, 255, 255]]  # unlabelled pixels stay unlabelled
    assert set(out) == {"labels", "masks"}


def test_unlabelled_pixels_are_negatives_for_the_focal_loss_and_count_nothing():
    # One class present on half the image; the other half unlabelled (padding or 255).
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:, :2] = True
    dense = one_hot_targets([{"labels": torch.tensor([1]), "masks": mask[None]}], 3, (4, 4), torch.device("cpu"))
    assert dense[0, 1].sum() == 8 and dense[0, [0, 2]].sum() == 0 and dense[0, :, :, 2:].sum() == 0
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    target = {"labels": torch.tensor([1]), "masks": mask[None]}
    losses = CascadeCriterion()(SimpleNamespace(pred_masks=logits), [target])
    (losses["loss_mask"]).backward()
    assert logits.grad is not None
    assert (logits.grad[0, :, :, 2:] > 0).all()  # unlabelled pixels are pushed down for every class
    assert (logits.grad[0, 1, :, :2] < 0).all()


def test_empty_targets_normalise_by_one():
    logits = torch.zeros(2, 3, 4, 4)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 4, 4, dtype=torch.bool)}
    losses = CascadeCriterion()(SimpleNamespace(pred_masks=logits), [empty, empty])
    # focal of logit 0 against 0: 0.75 * log(2) * 0.25 per pixel, 6 maps, num_masks clamped to 1
    assert float(losses["loss_mask"]) == pytest.approx(6 * 0.75 * np.log(2) * 0.25, rel=1e-6)
    assert float(losses["loss_dice"]) == 0.0
