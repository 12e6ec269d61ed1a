"""Cascade-CLIP: a prompted CLIP ViT whose intermediate features are aligned with text by cascaded decoders.

Inference (the official mmseg test path): the image's short side is resized to 512 (OpenCV
bilinear, by the input policy), 512 x 512 windows slide with stride 426; each window's mask
logits become sigmoid scores, minus ``seen_offset`` on the classes seen in training (inductive
models), averaged where windows overlap. The predictor resizes the scores to the image and
takes the argmax (the official softmax does not change it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.clip.text import TextEncoder, clip_text_encoder
from vocabseg.errors import ImageError, VocabularyError
from vocabseg.models.cascade_clip.cascade_decoder import CascadeDecoder
from vocabseg.models.cascade_clip.config import CascadeCLIPConfig, CascadeCLIPSettings
from vocabseg.models.cascade_clip.vpt_vit import LevelProjections, VisualFeatures, VisualPrompts, encode_windows
from vocabseg.models.protocol import InputBatch, QueryOutput, ResizeAndPad, Settings
from vocabseg.precision import fast_inference
from vocabseg.text.classifier import TextClassifier

# Dense scores held for one image: classes x resized pixels (4 bytes each). An extreme aspect
# ratio (a 100:1 strip becomes 512 x 51200) would otherwise take tens of GB.
MAX_SCORE_ELEMENTS = 2 ** 30


@dataclass
class CascadeOutput:
    """Training outputs: what the Cascade-CLIP loss reads."""

    pred_masks: torch.Tensor  # [B, K, S, S] mask logits at the window size (sum of the stages, upsampled)
    stage_masks: list[torch.Tensor]  # per stage [B, K, S/16, S/16] last-layer mask logits


class CascadeCLIP(nn.Module):
    """CLIP (image + text tower) + visual prompts + level projections + cascaded decoders."""

    def __init__(self, *, config: CascadeCLIPConfig, clip: nn.Module, prompts: VisualPrompts,
                 levels: LevelProjections, decoder: CascadeDecoder):
        super().__init__()
        self.config = config
        self.clip: Any = clip  # open_clip CLIP; typed Any as its submodules are untyped
        self.prompts, self.levels, self.decoder = prompts, levels, decoder

    # ---- generic protocol ----------------------------------------------------------------
    def input_policy(self, settings: Settings) -> ResizeAndPad:
        return ResizeAndPad(settings.inference.min_size, settings.inference.max_size, self.config.pixel_mean,
                            self.config.pixel_std, size_divisibility=1, resize_backend="cv2")

    def text_encoder(self) -> TextEncoder:
        """The CLIP text tower with the variant's prompt templates (their set is part of the cache key)."""
        encoder = clip_text_encoder(self.clip, clip_model_name=self.config.clip_model_name,
                                    custom_clip=self.config.clip_config is not None)
        return encoder._replace(templates=self.config.prompt_templates)

    def trainable_parameter_names(self) -> list[str]:
        return [name for name, param in self.named_parameters() if param.requires_grad]

    # ---- network ---------------------------------------------------------------------------
    def features(self, windows: torch.Tensor) -> VisualFeatures:
        """Prompted ViT levels of normalised windows [N, 3, S, S]."""
        return encode_windows(self.clip.visual, self.prompts, self.levels, windows,
                              level_blocks=self.config.level_blocks,
                              drop_path_rate=self.config.drop_path_rate if self.training else 0.0)

    def _fast_logits(self, images: torch.Tensor, classifier: TextClassifier) -> torch.Tensor:
        """Fast mode's [B, K, S, S] mask logits: the max over synonyms before the upsample, not after.

        Max and bilinear interpolation do not commute, so labels move where two synonyms cross
        inside a patch; the upsample and the max then touch K planes instead of T.
        """
        features = self.features(images)
        summed = torch.stack(self.decoder(features.levels, features.global_embedding, classifier.embeddings)).sum(0)
        per_class = _max_over_synonyms(summed, classifier)  # [B, K, h, w]
        return F.interpolate(per_class, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor, classifier: TextClassifier) -> CascadeOutput:
        """Mask logits of windows [B, 3, S, S] for the classifier's classes (training and analysis)."""
        features = self.features(images)
        stage_masks = self.decoder(features.levels, features.global_embedding, classifier.embeddings)
        summed = stage_masks[0]
        for masks in stage_masks[1:]:
            summed = summed + masks  # [B, T, h, w]
        pred = F.interpolate(summed, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return CascadeOutput(_max_over_synonyms(pred, classifier), [_max_over_synonyms(m, classifier)
                                                                    for m in stage_masks])

    def window_scores(self, windows: torch.Tensor, classifier: TextClassifier, seen_offset: float) -> torch.Tensor:
        """[N, K, S, S] test scores of windows: sigmoid of the mask logits, minus the offset on seen classes."""
        logits = self._fast_logits(windows, classifier) if fast_inference() else self(windows, classifier).pred_masks
        scores = logits.sigmoid()
        offsets = seen_offset * classifier.seen.to(scores)  # [K]: the offset on seen classes, 0 (exactly) elsewhere
        return scores - offsets.view(1, -1, 1, 1)

    # ---- test time -------------------------------------------------------------------------
    def inference(self, batch: InputBatch, classifier: TextClassifier, settings: Settings) -> QueryOutput:
        """Dense class scores of each resized image by sliding windows (no queries: semantic output only)."""
        own: CascadeCLIPSettings = settings.family
        if classifier.num_classes < 2:
            raise VocabularyError(f"Cascade-CLIP labels every pixel with one of the classes, so a vocabulary of "
                                  f"{classifier.num_classes} class gives one label everywhere: name at least two "
                                  "(e.g. add 'background')")
        batch_size, _, pad_h, pad_w = batch.images.shape
        dense = batch.images.new_zeros(batch_size, classifier.num_classes, pad_h, pad_w)
        for index, (height, width) in enumerate(batch.image_sizes):
            image = batch.images[index, :, :height, :width]
            dense[index, :, :height, :width] = self.slide(image, classifier, own)
        return QueryOutput(mask_cls=dense.new_zeros(batch_size, 0, classifier.num_classes + 1),
                           mask_logits=dense.new_zeros(batch_size, 0, pad_h, pad_w), mask_stride=1,
                           semantic_scores=dense, unassigned_at_or_below=None)

    def slide(self, image: torch.Tensor, classifier: TextClassifier, own: CascadeCLIPSettings) -> torch.Tensor:
        """[K, H, W] window-averaged scores of one normalised image [3, H, W], H and W >= the window."""
        height, width = image.shape[-2:]
        _check_image(height, width, own.window, classifier.num_classes)
        boxes = window_boxes(height, width, own.window, own.stride)
        total = image.new_zeros(classifier.num_classes, height, width)
        count = image.new_zeros(1, height, width)
        for start in range(0, len(boxes), max(own.window_batch, 1)):
            chunk = boxes[start:start + max(own.window_batch, 1)]
            windows = torch.stack([image[:, y1:y2, x1:x2] for y1, x1, y2, x2 in chunk])  # [n, 3, S, S]
            scores = self.window_scores(windows, classifier, own.seen_offset)
            for (y1, x1, y2, x2), window_score in zip(chunk, scores):  # in window order, as the official sum
                total[:, y1:y2, x1:x2] += window_score
                count[:, y1:y2, x1:x2] += 1
        return total / count


def window_boxes(height: int, width: int, window: int, stride: int) -> list[tuple[int, int, int, int]]:
    """(y1, x1, y2, x2) of mmseg's sliding windows, row-major; the last row/column is shifted inside."""
    rows = max(height - window + stride - 1, 0) // stride + 1
    cols = max(width - window + stride - 1, 0) // stride + 1
    boxes = []
    for row in range(rows):
        for col in range(cols):
            y2, x2 = min(row * stride + window, height), min(col * stride + window, width)
            boxes.append((max(y2 - window, 0), max(x2 - window, 0), y2, x2))
    return boxes


def _check_image(height: int, width: int, window: int, num_classes: int) -> None:
    if height < window or width < window:
        raise ImageError(f"the resized image is {width}x{height}, smaller than the {window}x{window} window of "
                         f"Cascade-CLIP: keep min_size >= {window} (--set min_size={window})")
    if num_classes * height * width > MAX_SCORE_ELEMENTS:
        raise ImageError(f"a {width}x{height} resized image with {num_classes} classes needs "
                         f"{num_classes * height * width * 4 / 2**30:.0f} GiB of scores: crop the image to a less "
                         "extreme aspect ratio or use fewer classes")


def _max_over_synonyms(masks: torch.Tensor, classifier: TextClassifier) -> torch.Tensor:
    """[B, T, ...] per-synonym maps -> [B, K, ...] per class (max over each class's synonyms)."""
    index = classifier.synonym_index.to(masks.device)  # [K, S]
    runs = _synonym_runs(index)
    if runs is not None and not masks.requires_grad:
        # Each class's synonyms are consecutive rows: a max over a slice reads T planes, where the
        # gather below copies K x S of them (S the longest list: 17 for pascal_voc_20's 'person').
        # Max is exact, so the result is bit-identical; training keeps the gather's gradient routing.
        if len(runs) == masks.shape[1]:
            return masks
        return torch.stack([masks[:, a] if b == a + 1 else masks[:, a:b].amax(dim=1) for a, b in runs], dim=1)
    if index.shape[1] > 1:
        return masks[:, index].max(dim=2).values
    rows = index[:, 0]
    identity = rows.numel() == masks.shape[1] and bool(torch.equal(rows, torch.arange(len(rows), device=rows.device)))
    return masks if identity else masks[:, rows]


def _synonym_runs(index: torch.Tensor) -> list[tuple[int, int]] | None:
    """Each class's rows as (start, stop) when they are consecutive and the classes tile 0..T in order, else None.

    Rows of ``index`` [K, S] are padded with their first entry (:func:`vocabseg.text.classifier.synonym_index`).
    """
    runs, expected = [], 0
    for row in index.tolist():
        count = len(dict.fromkeys(row))  # distinct rows, in order
        if row[:count] != list(range(expected, expected + count)) or any(r != expected for r in row[count:]):
            return None
        runs.append((expected, expected + count))
        expected += count
    return runs
