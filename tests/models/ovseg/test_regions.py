"""Tests for vocabseg.models.ovseg.regions: masked CLIP crops of mask proposals."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from vocabseg.models.ovseg.regions import expand_boxes, extract_regions, mask_boxes

H, W = 24, 40
THR = 0.4


def _image(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _hand_made_masks() -> torch.Tensor:
    m = torch.zeros(8, H, W)
    m[0, 5, 7] = 0.9  # one pixel
    m[1, :, W - 2 :] = 0.8  # right border, full height
    m[2, H - 1, :3] = 0.7  # bottom-left corner
    # m[3] empty
    m[4] = 1.0  # whole image
    m[5, 0, 0] = m[5, H - 1, W - 1] = 0.9  # two opposite corners
    m[6] = THR  # not > THR: empty
    m[7, 3:9, 10:20] = 0.9  # an L shape with a hole in its box
    m[7, 3:6, 15:20] = 0.1
    return m


def _reference(image: torch.Tensor, probs: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One region at a time, the plain way."""
    fill = torch.tensor([255.0 * c for c in OPENAI_DATASET_MEAN]).view(3, 1, 1)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1) * 255.0
    std = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1) * 255.0
    regions, masks = [], []
    for prob in probs:
        m = prob > THR
        if not m.any():
            continue
        ys, xs = m.nonzero(as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        crop, crop_mask = image[:, y0:y1, x0:x1].float(), m[None, y0:y1, x0:x1].float()
        region = (crop * crop_mask + (1 - crop_mask) * fill - mean) / std
        regions.append(F.interpolate(region[None], size=(size, size), mode="bicubic", align_corners=False))
        masks.append(F.interpolate(crop_mask[None], size=(size, size), mode="nearest"))
    return torch.cat(regions), torch.cat(masks)


def test_boxes_are_tight_with_exclusive_max():
    boxes = mask_boxes(_hand_made_masks() > THR)
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [
        [7, 5, 8, 6],
        [W - 2, 0, W, H],
        [0, H - 1, 3, H],
        [0, 0, 0, 0],  # empty
        [0, 0, W, H],
        [0, 0, W, H],
        [0, 0, 0, 0],  # == THR is empty
        [10, 3, 20, 9],
    ]


def test_expand_boxes_keeps_tight_boxes_and_clips_expanded_ones():
    boxes = torch.tensor([[7.0, 5.0, 8.0, 6.0], [1.0, 2.0, 5.0, 4.0]])
    assert expand_boxes(boxes, ratio=1.0, height=H, width=W).tolist() == [[7, 5, 8, 6], [1, 2, 5, 4]]
    # ratio 2: half-sizes 1 and 4 x 2 about centres (7.5, 5.5) and (3, 3); int() truncates toward zero
    assert expand_boxes(boxes, ratio=2.0, height=H, width=W).tolist() == [[6, 4, 8, 6], [0, 1, 7, 5]]
    assert expand_boxes(torch.tensor([[0.0, 0.0, W, H]]), ratio=3.0, height=H, width=W).tolist() == [[0, 0, W, H]]


def test_equals_a_per_region_reference():
    image, probs = _image(), _hand_made_masks()
    out = extract_regions(image, probs, mask_thr=THR, size=32)
    assert out.valid.tolist() == [True, True, True, False, True, True, False, True]
    regions, masks = _reference(image, probs, size=32)
    assert out.regions.shape == (6, 3, 32, 32) and out.masks.shape == (6, 1, 32, 32)
    assert torch.equal(out.regions, regions)
    assert torch.equal(out.masks, masks)


def test_default_size_float_image_and_chunking_give_the_same_numbers():
    image, probs = _image(1), torch.zeros(5, H, W)
    for i in range(5):  # five crops of one shape, resized together
        probs[i, i : i + 6, 2 * i : 2 * i + 9] = 0.9
        probs[i, i, 2 * i] = 0.0
    out = extract_regions(image, probs, mask_thr=THR)
    assert out.regions.shape == (5, 3, 224, 224)
    regions, masks = _reference(image, probs, size=224)
    for result in (out, extract_regions(image.float(), probs, mask_thr=THR, chunk_size=2)):
        assert torch.equal(result.regions, regions)
        assert torch.equal(result.masks, masks)


def test_pixels_outside_the_mask_take_clip_mean_colour():
    image, probs = _image(), _hand_made_masks()
    out = extract_regions(image, probs, mask_thr=THR, size=6)  # query 7's box is 6 x 10: only its width is resized
    region = out.regions[5]  # query 7
    # painted pixels normalise to (255 * mean - mean * 255) / (255 * std): 0 up to float32 rounding
    assert region[:, :3, -1].abs().max() < 1e-6  # top right of the box: the L's hole
    one_pixel = extract_regions(image, probs[:1], mask_thr=THR, size=3).regions[0]  # a constant crop
    mean, std = torch.tensor(OPENAI_DATASET_MEAN) * 255, torch.tensor(OPENAI_DATASET_STD) * 255
    expected = (image[:, 5, 7].float() - mean) / std
    torch.testing.assert_close(one_pixel, expected.view(3, 1, 1).expand(3, 3, 3), rtol=1e-6, atol=1e-6)


def test_no_valid_query_gives_empty_tensors():
    out = extract_regions(_image(), torch.full((4, H, W), THR), mask_thr=THR)
    assert out.regions.shape == (0, 3, 224, 224)
    assert out.masks.shape == (0, 1, 224, 224)
    assert out.valid.tolist() == [False] * 4
    assert extract_regions(_image(), torch.zeros(0, H, W), mask_thr=THR).regions.shape == (0, 3, 224, 224)
