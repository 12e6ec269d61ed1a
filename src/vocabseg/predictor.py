"""Task-shaped inference: load a model once, set a vocabulary, segment images."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.checkpoints import load_model
from vocabseg.errors import ConfigError, DeviceError, ImageError, VocabularyError
from vocabseg.images import load_image
from vocabseg.models import TASKS, InputBatch, ModelFamily, QueryOutput, Settings, get_family
from vocabseg.postprocess import (
    TILE_ELEMENTS,
    QueryMasks,
    instance_inference,
    panoptic_inference,
    semantic_labels,
)
from vocabseg.precision import Recipe, choose_recipe, inference_precision, to_float32
from vocabseg.preprocess import crop_and_resize, normalize_and_pad, resize_image
from vocabseg.segments import Segment
from vocabseg.text import TextClassifier, TextEmbeddingCache, Vocabulary, default_vocabulary, resolve_vocabulary
from vocabseg.text.vocabulary import join_synonyms


@dataclass
class Prediction:
    """Results for one image at its original size (only the requested tasks are filled)."""

    height: int
    width: int
    class_names: list[str]
    semantic: np.ndarray | None = None  # [H, W] int32 class index per pixel (-1: unassigned, demo mode only)
    panoptic: np.ndarray | None = None  # [H, W] int32 segment id, 0 = unassigned
    segments: list[Segment] = field(default_factory=list)
    instance_masks: np.ndarray | None = None  # [N, H, W] bool
    instance_scores: np.ndarray | None = None  # [N] float32
    instance_classes: np.ndarray | None = None  # [N] int64 class index

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` of the instances (else the panoptic segments); needs ``[supervision]``."""
        from vocabseg.integrations.supervision import to_detections

        return to_detections(self)


@dataclass
class RawOutput:
    """Model-level tensors of one image, for analysis and parity checks."""

    mask_cls: torch.Tensor  # [Q, K + 1] class log-probabilities, void last
    pred_masks: torch.Tensor  # [Q, H_pad / s, W_pad / s] raw mask logits of the padded input
    mask_stride: int  # s
    input_size: tuple[int, int]  # the resized image inside the padded input
    output_size: tuple[int, int]  # the original image
    details: dict[str, torch.Tensor] = field(default_factory=dict)  # the family's own tensors of this image
    class_probs: torch.Tensor | None = None  # [Q, K] scores to use as they are (None: softmax(mask_cls) - void)
    semantic_scores: torch.Tensor | None = None  # [K, H_pad, W_pad] dense scores replacing the query merge
    unassigned_at_or_below: float | None = 0.0  # dense-score floor of a labelled pixel (None: all labelled)

    def padded_mask_logits(self, queries: torch.Tensor | None = None) -> torch.Tensor:
        """[Q, H_pad, W_pad]: mask logits upsampled to the padded network input (of ``queries`` only if given)."""
        pred = self.pred_masks if queries is None else self.pred_masks[queries]
        size = (self.mask_stride * pred.shape[-2], self.mask_stride * pred.shape[-1])
        return F.interpolate(pred[None], size=size, mode="bilinear", align_corners=False)[0]

    def query_mask_logits(self) -> QueryMasks:
        """The rows of :attr:`mask_logits`, made a few queries at a time into buffers reused from
        call to call (each call's block is valid until the next); equal to them up to float32
        rounding (each query's map is resized on its own, whichever queries share a call)."""
        resize = _ReusedResize(self)
        return QueryMasks(resize, self.pred_masks.shape[0], self.output_size, self.pred_masks.device,
                          make_top=resize.top_rows)

    @cached_property
    def mask_logits(self) -> torch.Tensor:
        """[Q, H, W] mask logits at the original image size (padding cropped, then resized).

        For analysis only: Q x H x W floats (12 GB for 250 queries on a 12 MP photo);
        :meth:`Predictor.postprocess` reads :meth:`query_mask_logits` instead.
        """
        return crop_and_resize(self.padded_mask_logits(), self.input_size, self.output_size)


class _ReusedResize:
    """:meth:`RawOutput.padded_mask_logits` then :func:`crop_and_resize` of a few queries, written
    into two buffers kept from call to call: at a 12 MP output a fresh block of 8 queries is
    400 MB, and allocating one per call made the kernel zero new pages each time (system time
    above the compute). The same kernels as :func:`F.interpolate` (out= variant): the same bits."""

    def __init__(self, raw: RawOutput):
        self.raw = raw
        self.padded: torch.Tensor | None = None  # flat float buffers, grown on demand
        self.resized: torch.Tensor | None = None

    def __call__(self, queries: torch.Tensor) -> torch.Tensor:
        """[n, H, W] logits of ``queries`` at the image size (valid until the next call)."""
        cropped = self._cropped(queries)
        if tuple(cropped.shape[-2:]) == tuple(self.raw.output_size):  # as crop_and_resize: no same-size resize
            return cropped[0]
        self.resized, resized = _view(self.resized, (*cropped.shape[:2], *self.raw.output_size), cropped)
        torch._C._nn.upsample_bilinear2d(cropped, self.raw.output_size, False, None, None,  # type: ignore[call-arg]
                                         out=resized)  # the out= overload is missing from the stubs
        return resized[0]

    def top_rows(self, queries: torch.Tensor, stop: int) -> torch.Tensor:
        """[n, >= stop, W]: the first ``stop`` rows of ``self(queries)``, bit for bit, at the cost of
        those rows only where torch's resize allows it (see :func:`top_rows_plan`), else all rows."""
        cropped = self._cropped(queries)
        plan = top_rows_plan((cropped.shape[-2], cropped.shape[-1]), self.raw.output_size, stop)
        if plan is None:
            return self(queries)
        rows_in, scale_h, scale_w = plan
        self.resized, resized = _view(self.resized, (*cropped.shape[:2], stop, self.raw.output_size[1]), cropped)
        # the out= overload with scale factors, missing from torch's stubs
        torch._C._nn.upsample_bilinear2d(cropped[:, :, :rows_in], resized.shape[-2:], False,  # type: ignore
                                         scale_h, scale_w, out=resized)  # type: ignore[arg-type]
        return resized[0]

    def _cropped(self, queries: torch.Tensor) -> torch.Tensor:
        """[1, n, h_in, w_in]: the queries' logits upsampled to the padded input, padding cropped (a view)."""
        raw, count = self.raw, int(queries.shape[0])
        pred = raw.pred_masks[queries]  # [n, h, w] at the mask stride
        padded_size = (raw.mask_stride * pred.shape[-2], raw.mask_stride * pred.shape[-1])
        self.padded, padded = _view(self.padded, (1, count, *padded_size), pred)
        torch._C._nn.upsample_bilinear2d(pred[None], padded_size, False, None, None,  # type: ignore[call-arg]
                                         out=padded)
        return padded[:, :, : raw.input_size[0], : raw.input_size[1]]


def top_rows_plan(size: tuple[int, int], output_size: tuple[int, int],
                  stop: int) -> tuple[int, float, float] | None:
    """How to make the first ``stop`` rows of a bilinear resize [h, w] -> ``output_size`` exactly as the
    whole resize does: (input rows to read, scale_h, scale_w for ``upsample_bilinear2d``), or None.

    torch's CPU kernel (not channels-last, output height + width > 128: the generic kernel; below
    that a separable one that rounds differently) computes each output pixel from its index and
    the scale alone. Handing it the whole resize's scales (as explicit factors whose reciprocal
    rounds to the same float32 in / out) and the input rows those output rows read (plus a margin,
    so the bottom clamp is not hit) gives the same bits for those rows. Tested in test_predictor.
    """
    (height, width), (out_h, out_w) = size, output_size
    if stop >= out_h or stop + out_w <= 128:
        return None
    factors = []
    for n_in, n_out in ((height, out_h), (width, out_w)):
        scale = np.float32(n_in) / np.float32(n_out)  # the kernel's in / out in float32
        factor = 1.0 / float(scale)
        if np.float32(1.0 / factor) != scale:
            return None
        factors.append(factor)
    last = float(np.float32(float(np.float32(height) / np.float32(out_h)) * (stop - 0.5) - 0.5))  # row stop - 1
    return min(height, max(int(last), 0) + 3), factors[0], factors[1]


def _view(buffer: torch.Tensor | None, shape: tuple[int, ...], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the buffer, grown if it is too small; a contiguous ``shape`` view of its start)."""
    numel = 1
    for size in shape:
        numel *= size
    if buffer is None or buffer.numel() < numel:
        buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buffer, buffer[:numel].view(shape)


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA device is available; use --device cpu")
    return device


class Predictor:
    """Open-vocabulary segmentation with a user-chosen vocabulary, for any model family.

    Example:
        >>> predictor = Predictor.from_pretrained("fcclip_convnext_large_coco")
        >>> predictor.set_vocabulary("car; person; traffic cone; wet road [stuff]")
        >>> result = predictor.predict("street.jpg", task="panoptic")
    """

    def __init__(self, model: nn.Module, config: Any, settings: Settings, *, family: ModelFamily | str = "fcclip",
                 train_vocabulary: str | Vocabulary = "coco_panoptic", device: str | torch.device = "cpu",
                 text_cache: TextEmbeddingCache | None = None):
        self.device = resolve_device(device)
        self.family = get_family(family) if isinstance(family, str) else family
        # A SegmentationModel (vocabseg.models.protocol); typed Any as nn.Module's attributes are untyped.
        self.model: Any = cast(Any, model).to(self.device).eval()
        self.config, self.settings = config, settings
        self.train_vocabulary = resolve_vocabulary(train_vocabulary)
        self.text_cache = text_cache if text_cache is not None else TextEmbeddingCache()
        self.vocabulary: Vocabulary | None = None
        self.classifier: TextClassifier | None = None
        self._text_encoder = self.model.text_encoder()
        # whether the classifier's text was embedded by the bf16 tower; None for embeddings read from a file
        self._embedded_bf16: bool | None = None

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, weights: str | None = None, clip_weights: str | None = None,
                        device: str = "cpu", inference: dict | None = None,
                        text_cache: TextEmbeddingCache | None = None, progress: bool = True) -> Predictor:
        """Builds the model of a zoo name or checkpoint path and loads its weights.

        Args:
            name_or_path: a name from ``vocabseg.list_models()``, a checkpoint file, a shared folder
                (``config.json`` + ``model.safetensors``) or ``"hf-hub:org/name[@revision]"``.
            weights: checkpoint file for a zoo name (skips the download).
            clip_weights: open_clip state-dict file for checkpoints without CLIP weights.
            inference: overrides of test-time settings, generic or the family's,
                e.g. ``{"min_size": 1024, "ensemble_alpha": 0.5}``.
        """
        resolve_device(device)
        loaded = load_model(name_or_path, weights=weights, clip_weights=clip_weights, progress=progress)
        return cls(loaded.model, loaded.config, loaded.settings.override(inference), family=loaded.family,
                   train_vocabulary=loaded.train_vocabulary, device=device, text_cache=text_cache)

    @property
    def inference(self):
        """The family-independent test-time settings (test size, merge thresholds)."""
        return self.settings.inference

    @property
    def recipe(self) -> Recipe:
        """How the model runs: exact, or fast in bf16 or float32 (vocabseg.precision's one rule)."""
        return choose_recipe(self.inference.precision, self.device)

    def describe(self) -> dict[str, Any]:
        """What produced this predictor's outputs, JSON-able: family, architecture, settings, training vocabulary,
        and in fast mode the arithmetic this device chose (bf16, int8), which changes the outputs: a run folder
        resumed on other hardware must not mix them."""
        described = {"family": self.family.name, "config": self.config.to_dict(),
                     "settings": self.settings.to_dict(), "train_vocabulary": self.train_vocabulary.name}
        recipe = self.recipe
        if recipe.fast:
            described["recipe"] = {"bf16": recipe.bf16, "int8": recipe.int8}
        return described

    def with_settings(self, overrides: dict[str, Any] | None) -> Predictor:
        """Changes test-time settings in place (e.g. a benchmark's test size); returns self."""
        self.settings = self.settings.override(overrides)
        if self.vocabulary is not None and self._embedded_bf16 not in (None, self.recipe.bf16):
            self.set_vocabulary(self.vocabulary, progress=False)  # the text tower's precision follows the mode
        return self

    # ---- vocabulary -------------------------------------------------------------------------
    def set_vocabulary(self, vocabulary: str | Vocabulary | None = None, *, progress: bool | None = None,
                       text_embeddings: str | os.PathLike | None = None) -> Vocabulary:
        """Sets the classes to find (built-in name, file, inline text; None = the demo's default).

        ``text_embeddings``: a ``.npy`` of precomputed class embeddings [classes, width] to use as
        they are instead of encoding the vocabulary (e.g. the official Cascade-CLIP files).
        """
        vocab = default_vocabulary() if vocabulary is None else resolve_vocabulary(vocabulary)
        if len(vocab) == 0:
            raise VocabularyError("the vocabulary is empty: give at least one class, e.g. --vocab 'cat; dog'")
        if text_embeddings is not None:
            width = int(self._text_encoder.encode(["a photo of a cat."]).shape[-1])
            self.classifier = TextClassifier.from_file(text_embeddings, vocab, self.train_vocabulary, width=width,
                                                       device=self.device)
            self.vocabulary, self._embedded_bf16 = vocab, None
            return vocab
        prompted = join_synonyms(vocab) if self._text_encoder.join_synonyms else vocab
        # bf16 recipe: a bf16 text tower, about twice as fast on native-bf16 CPUs, with cache entries of its own
        bf16 = self.recipe.bf16
        encode, encoder_id = self._text_encoder.for_precision(bf16)
        text = self.text_cache.get_or_build(prompted, encode, encoder_id, templates=self._text_encoder.templates,
                                            progress=progress)
        self.classifier = TextClassifier.build(text, vocab, self.train_vocabulary, device=self.device)
        self.vocabulary, self._embedded_bf16 = vocab, bf16
        return vocab

    # ---- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, images) -> list[RawOutput]:
        """Model outputs for a list of images (paths, PIL images or uint8 arrays)."""
        if self.classifier is None:
            raise VocabularyError("no vocabulary set: call set_vocabulary(...) first")
        arrays = [self._check_size(load_image(img)) for img in images]
        policy = self.model.input_policy(self.settings)
        resized = [resize_image(a, policy.min_size, policy.max_size, policy.resize_backend) for a in arrays]
        tensors = [torch.from_numpy(np.ascontiguousarray(r.transpose(2, 0, 1))).to(self.device) for r in resized]
        batch, sizes = normalize_and_pad(tensors, policy.pixel_mean, policy.pixel_std, policy.size_divisibility)
        with inference_precision(self.model, self.device, self.recipe):
            out: QueryOutput = self.model.inference(InputBatch(batch, sizes, tensors), self.classifier,
                                                    self.settings)
        out = to_float32(out)
        return [
            RawOutput(out.mask_cls[i], out.mask_logits[i], out.mask_stride, sizes[i], arrays[i].shape[:2],
                      {name: value[i] for name, value in out.details.items()},
                      None if out.class_probs is None else out.class_probs[i],
                      None if out.semantic_scores is None else out.semantic_scores[i],
                      out.unassigned_at_or_below)
            for i in range(len(arrays))
        ]

    def _check_size(self, array: np.ndarray) -> np.ndarray:
        height, width = array.shape[:2]
        limit = self.inference.max_pixels
        if limit and height * width > limit:
            raise ImageError(f"image of {width}x{height} ({height * width / 1e6:.0f} MP) is over the "
                             f"{limit / 1e6:g} MP limit: resize it, or raise the limit with --set max_pixels=N "
                             "(post-processing memory grows with the pixel count)")
        return array

    def predict(self, images, task: str | tuple[str, ...] = "panoptic", *, batch_size: int = 1):
        """Segments one image (returns a Prediction) or a list (returns a list)."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        tasks = self.family.tasks if task == "all" else ((task,) if isinstance(task, str) else tuple(task))
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"unknown task {unknown[0]!r}; choose panoptic, semantic, instance or all")
        unsupported = [t for t in tasks if t not in self.family.tasks]
        if unsupported:
            raise ConfigError(f"{self.family.title} models give {', '.join(self.family.tasks)} output, "
                              f"not {unsupported[0]}; choose another --task")
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            results.extend(self.postprocess(raw, tasks) for raw in self.run(items[start:start + batch_size]))
        return results[0] if single else results

    def postprocess(self, raw: RawOutput, tasks: tuple[str, ...]) -> Prediction:
        vocab = self._require_vocabulary()
        height, width = raw.output_size
        pred = Prediction(height, width, vocab.class_names)
        fast = self.recipe.fast
        masks = _shared_masks(raw, tasks, fast)
        if "semantic" in tasks:
            pred.semantic = self._semantic(raw, tasks, masks, fast=fast).int().cpu().numpy()
        if "panoptic" in tasks:
            pan = panoptic_inference(raw.mask_cls, masks, vocab.thing_mask,
                                     object_mask_threshold=self.inference.object_mask_threshold,
                                     overlap_threshold=self.inference.overlap_threshold)
            pred.panoptic = pan.segment_map.cpu().numpy()
            areas = np.bincount(pred.panoptic.ravel(), minlength=len(pan.segments) + 1)
            pred.segments = [replace(s, area=int(areas[s.id]), class_name=vocab.class_names[s.category])
                             for s in pan.segments]
        if "instance" in tasks:
            inst = instance_inference(raw.mask_cls, masks, vocab.thing_mask,
                                      top_k=self.inference.instances_per_image)
            pred.instance_masks = inst.masks.cpu().numpy()
            pred.instance_scores = inst.scores.float().cpu().numpy()
            pred.instance_classes = inst.classes.cpu().numpy()
        return pred

    def _require_vocabulary(self) -> Vocabulary:
        if self.vocabulary is None:
            raise VocabularyError("no vocabulary set: call set_vocabulary(...) first")
        return self.vocabulary

    @staticmethod
    def _semantic(raw: RawOutput, tasks, masks: torch.Tensor | QueryMasks, *, fast: bool = False) -> torch.Tensor:
        """Semantic labels in the reference's order of operations (-1: a pixel no class claims).

        With panoptic or instance output the masks are resized to the image first and scored
        there; semantic alone scores the padded-resolution masks and resizes the class scores.
        Fast mode scores the masks at their own resolution and resizes the class scores.
        """
        if raw.semantic_scores is not None:  # dense scores (OVSeg demo mode, Cascade-CLIP): resize, argmax
            return _dense_labels(raw.semantic_scores, raw.input_size, raw.output_size, raw.unassigned_at_or_below)
        if fast:  # [K, h, w] scores, then each chunk upsampled by the mask stride, cropped and resized
            def resize(scores: torch.Tensor) -> torch.Tensor:
                return crop_and_resize(_upsampled(scores, raw.mask_stride), raw.input_size, raw.output_size)
            return semantic_labels(raw.mask_cls, raw.pred_masks, class_probs=raw.class_probs, resize=resize)
        if "panoptic" in tasks or "instance" in tasks:
            return semantic_labels(raw.mask_cls, masks, class_probs=raw.class_probs)
        return semantic_labels(raw.mask_cls, raw.padded_mask_logits(), class_probs=raw.class_probs,
                               resize=lambda scores: crop_and_resize(scores, raw.input_size, raw.output_size))


def _shared_masks(raw: RawOutput, tasks: tuple[str, ...], fast: bool) -> torch.Tensor | QueryMasks:
    """The image-size mask logits the tasks read: all [Q, H, W] resized once when exact semantic
    scoring resizes every query anyway and panoptic or instance output reads them too (the same
    bits: each query is resized on its own), if they fit ``TILE_ELEMENTS``; else a
    :class:`QueryMasks` that each task resizes chunk by chunk (bounded memory). Panoptic and
    instance output alone read only their kept queries: resizing those is cheaper than all."""
    masks = raw.query_mask_logits()
    height, width = masks.size
    shared = "semantic" in tasks and not fast and len(tasks) > 1
    if not shared or masks.num_queries * height * width > TILE_ELEMENTS:
        return masks
    return masks.rows(0, height)


def _upsampled(maps: torch.Tensor, stride: int) -> torch.Tensor:
    """[C, h, w] -> [C, stride * h, stride * w], bilinear (the padded network input's size)."""
    size = (stride * maps.shape[-2], stride * maps.shape[-1])
    return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]


def _dense_labels(scores: torch.Tensor, input_size: tuple[int, int], output_size: tuple[int, int],
                  floor: float | None = 0.0, chunk: int = 16) -> torch.Tensor:
    """[H, W] argmax of [K, H_pad, W_pad] class scores cropped and resized to the image (-1 where the
    best score is not above ``floor``; None: no blanks), resizing ``chunk`` classes at a time."""
    best: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    for start in range(0, scores.shape[0], chunk):
        value, index = crop_and_resize(scores[start:start + chunk], input_size, output_size).max(0)  # [H, W]
        if best is None or labels is None:
            best, labels = value, index
        else:
            better = value > best  # strict: an earlier class keeps a tie, as max over all classes
            best, labels = torch.where(better, value, best), torch.where(better, index + start, labels)
    assert best is not None and labels is not None  # at least one class
    if floor is None:
        return labels
    return torch.where(best > floor, labels, torch.full_like(labels, -1))
