"""mmseg augmentation, zero-shot targets, padding and the poly schedule, on hand-made inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vocabseg.errors import ConfigError
from vocabseg.train.cascade_clip.data import ClassSplit, DenseCollate, DenseExample, resolve_split, split_targets
from vocabseg.train.cascade_clip.transforms import MMSegAugment, mmseg_augment, random_crop, random_resize, rescale_size
from vocabseg.train.data import SampleKey
from vocabseg.train.optim import poly_lr_factor

IGNORE = 255


def test_rescale_fits_the_image_in_the_scale_as_mmcv():
    assert rescale_size(400, 600, (2048, 512)) == (512, 768)  # short side to 512
    assert rescale_size(100, 1000, (2048, 512)) == (205, 2048)  # long side capped first
    assert rescale_size(333, 500, (1024, 256)) == (256, 384)  # int(x + 0.5) rounding: 384.38 -> 384


def _balanced(crop: np.ndarray) -> bool:
    _, counts = np.unique(crop, return_counts=True)
    return len(counts) > 1 and counts.max() / counts.sum() < 0.75


def test_crop_is_redrawn_while_one_class_dominates():
    labels = np.zeros((100, 100), dtype=np.int64)  # two classes side by side; a 40 x 40 window
    labels[:, :50] = 1  # is balanced only within ~10 pixels of the border between them
    image = np.zeros((100, 100, 3), dtype=np.uint8)

    def balanced_draws(cat_max_ratio: float) -> int:
        aug = MMSegAugment(crop_size=40, cat_max_ratio=cat_max_ratio)
        return sum(_balanced(random_crop(image, labels, np.random.default_rng(s), aug)[1]) for s in range(40))

    assert balanced_draws(0.75) == 40  # measured 40 of 40 with up to 10 redraws ...
    assert balanced_draws(1.0) < 20  # ... and 12 of 40 without


def test_augment_is_a_function_of_the_seed_and_fits_the_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, (120, 200)).astype(np.int64)
    aug = MMSegAugment(crop_size=64, scale=(256, 64))
    a = mmseg_augment(image, labels, np.random.default_rng(7), aug)
    b = mmseg_augment(image, labels, np.random.default_rng(7), aug)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for seed in range(10):
        out_image, out_labels = mmseg_augment(image, labels, np.random.default_rng(seed), aug)
        assert out_image.dtype == np.uint8 and out_image.shape[:2] == out_labels.shape
        assert max(out_labels.shape) <= 64 and set(np.unique(out_labels)) <= set(range(5))


def _labels() -> np.ndarray:
    # 2 x 4 map over 4 classes: 0 and 2 seen, 1 and 3 unseen, one unlabelled pixel
    return np.array([[0, 0, 1, 3], [2, 2, 1, IGNORE]])


def test_inductive_targets_renumber_seen_classes_and_drop_unseen_pixels():
    target = split_targets(_labels(), ClassSplit(4, (0, 2)), IGNORE)
    assert set(target) == {"labels", "masks"}
    assert target["labels"].tolist() == [0, 1]  # class 2 is the head's channel 1
    assert target["masks"].int().tolist() == [[[1, 1, 0, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [1, 1, 0, 0]]]


def test_transductive_targets_keep_indices_and_hand_over_unseen_pixels():
    target = split_targets(_labels(), ClassSplit(4, (0, 2), transductive=True), IGNORE)
    assert target["labels"].tolist() == [0, 2]
    assert target["unseen_pixels"].int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 0]]  # not the unlabelled pixel
    assert target["pseudo_classes"].tolist() == [1, 3]


def test_collate_pads_to_the_crop_size_with_the_mean_and_unlabelled_masks():
    image = torch.full((3, 2, 3), 128, dtype=torch.uint8)
    target = split_targets(_labels()[:, :3], ClassSplit(4, (0, 2), transductive=True), IGNORE)
    batch = DenseCollate((128.0, 128.0, 128.0), (2.0, 2.0, 2.0), 4)([DenseExample(image, target, SampleKey(0, 0, 0))])
    assert batch.images.shape == (1, 3, 4, 4) and not batch.images.any()  # mean colour -> 0, padding 0
    padded = batch.targets[0]
    assert padded["masks"].shape == (2, 4, 4)
    assert not padded["masks"][:, 2:].any() and not padded["masks"][:, :, 3:].any()
    assert padded["unseen_pixels"].shape == (4, 4) and padded["unseen_pixels"].sum() == 2


def test_split_by_names_or_indices_and_its_errors():
    names = ["cat", "dog", "cow"]
    assert resolve_split(names, seen=["dog", 0], unseen=None, transductive=False).seen == (0, 1)
    assert resolve_split(names, seen=None, unseen=[2], transductive=True).unseen == (2,)
    assert resolve_split(names, seen=None, unseen=None, transductive=False).seen == (0, 1, 2)
    with pytest.raises(ConfigError, match="'horse' is not a class of the training vocabulary"):
        resolve_split(names, seen=["horse"], unseen=None, transductive=False)
    with pytest.raises(ConfigError, match="not both"):
        resolve_split(names, seen=[0], unseen=[1], transductive=False)
    with pytest.raises(ConfigError, match="transductive=true needs unseen classes"):
        resolve_split(names, seen=None, unseen=None, transductive=True)


def test_poly_schedule_with_warmup_is_mmcvs():
    base, min_lr, total = 2e-4, 1e-6, 20000

    def mmcv(it: int) -> float:  # mmcv PolyLrUpdaterHook + linear warmup (lr_updater.py), written out
        regular = (base - min_lr) * (1 - it / total) ** 0.9 + min_lr
        if it >= 1500:
            return regular
        return regular * (1 - (1 - it / 1500) * (1 - 1e-6))

    for it in (0, 1, 750, 1499, 1500, 10000, 19999):
        factor = poly_lr_factor(it, max_iter=total, power=0.9, min_factor=min_lr / base, warmup_iters=1500,
                                warmup_factor=1e-6)
        assert base * factor == pytest.approx(mmcv(it), rel=1e-12)


def test_class_255_of_a_large_vocabulary_is_not_taken_for_unlabelled():
    from vocabseg.data.records import Segment
    from vocabseg.train.cascade_clip.data import class_map
    from vocabseg.train.sources import RawExample

    ids = np.array([[0, 1, 2]])  # void, segment 1 (class 255), segment 2 (class 3)
    segments = (Segment(1, 255, is_thing=False, iscrowd=False, area=1), Segment(2, 3, is_thing=False, iscrowd=False,
                                                                                  area=1))
    labels = class_map(RawExample(np.zeros((1, 3, 3), np.uint8), ids, segments), MMSegAugment().ignore_label)
    assert labels.tolist() == [[-1, 255, 3]]
    target = split_targets(labels, ClassSplit(300, (3, 255)), -1)
    assert target["labels"].tolist() == [0, 1] and target["masks"].int().tolist() == [[[0, 0, 1]], [[0, 1, 0]]]


def test_short_side_choices_resize_as_detectron2_choice():
    aug = MMSegAugment(crop_size=32, scale=(70, 32), short_side_choices=(24, 40))
    rng = np.random.default_rng(0)
    image, labels = np.zeros((30, 60, 3), np.uint8), np.zeros((30, 60), np.int64)
    sizes = {random_resize(image, labels, rng, aug)[0].shape[:2] for _ in range(20)}
    # short side 24 -> 24 x 48; 40 -> 40 x 80 capped at 70 on the long side -> 35 x 70
    assert sizes == {(24, 48), (35, 70)}
