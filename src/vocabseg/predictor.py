"""Task-shaped inference: load a model once, set a vocabulary, segment images."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from .images import load_image
from .model.build import build_fcclip
from .model.config import FCCLIPConfig, InferenceConfig
from .model.ensemble import geometric_ensemble
from .model.fcclip import FCCLIP
from .model.postprocess import instance_inference, panoptic_inference, semantic_labels
from .model.preprocess import crop_and_resize, normalize_and_pad, resize_image
from .text.encode import clip_text_encoder
from .text import TextEmbeddingCache, Vocabulary, default_vocabulary, resolve_vocabulary, seen_mask
from .weights import check_state_dict, load_clip_weights, log, resolve_checkpoint

TASKS = ("panoptic", "semantic", "instance")


@dataclass
class Segment:
    id: int  # value in the panoptic map
    category_id: int  # class index in the vocabulary
    class_name: str
    is_thing: bool
    score: float
    area: int


@dataclass
class Prediction:
    """Results for one image at its original size (only the requested tasks are filled)."""

    height: int
    width: int
    class_names: list[str]
    semantic: np.ndarray | None = None  # [H, W] int32 class index per pixel
    panoptic: np.ndarray | None = None  # [H, W] int32 segment id, 0 = unassigned
    segments: list[Segment] = field(default_factory=list)
    instance_masks: np.ndarray | None = None  # [N, H, W] bool
    instance_scores: np.ndarray | None = None  # [N] float32
    instance_classes: np.ndarray | None = None  # [N] int64 class index


@dataclass
class RawOutput:
    """Model-level tensors of one image, for analysis and parity checks."""

    in_vocab_logits: torch.Tensor  # [Q, K + 1]
    out_vocab_logits: torch.Tensor  # [Q, K + 1]
    mask_cls: torch.Tensor  # [Q, K + 1] ensembled log-probabilities
    pred_masks: torch.Tensor  # [Q, H_pad/4, W_pad/4] raw decoder mask logits of the padded input
    input_size: tuple[int, int]  # the resized image inside the padded input
    output_size: tuple[int, int]  # the original image

    def padded_mask_logits(self) -> torch.Tensor:
        """[Q, H_pad, W_pad]: mask logits upsampled to the padded network input."""
        size = (4 * self.pred_masks.shape[-2], 4 * self.pred_masks.shape[-1])  # masks are at stride 4
        return F.interpolate(self.pred_masks[None], size=size, mode="bilinear", align_corners=False)[0]

    @cached_property
    def mask_logits(self) -> torch.Tensor:
        """[Q, H, W] mask logits at the original image size (padding cropped, then resized)."""
        return crop_and_resize(self.padded_mask_logits(), self.input_size, self.output_size)


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA device is available; use --device cpu")
    return device


class Predictor:
    """FC-CLIP inference with a user-chosen vocabulary.

    Example:
        >>> predictor = Predictor.from_pretrained("fcclip_convnext_large_coco")
        >>> predictor.set_vocabulary("car; person; traffic cone; wet road [stuff]")
        >>> result = predictor.predict("street.jpg", task="panoptic")
    """

    def __init__(self, model: FCCLIP, config: FCCLIPConfig, inference: InferenceConfig, *,
                 train_vocabulary: str | Vocabulary = "coco_panoptic", device: str | torch.device = "cpu",
                 text_cache: TextEmbeddingCache | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config, self.inference = config, inference
        self.train_vocabulary = resolve_vocabulary(train_vocabulary)
        self.text_cache = text_cache if text_cache is not None else TextEmbeddingCache()
        self.vocabulary: Vocabulary | None = None
        self._text_encoder = clip_text_encoder(self.model.backbone, clip_model_name=config.clip_model_name,
                                               custom_clip=config.clip_config is not None)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, weights: str | None = None, clip_weights: str | None = None,
                        device: str = "cpu", inference: dict | None = None, text_cache: TextEmbeddingCache | None = None,
                        progress: bool = True) -> "Predictor":
        """Builds the model of a zoo name or checkpoint path and loads its weights.

        Args:
            name_or_path: a name from ``vocabseg.zoo.list_models()`` or a checkpoint file.
            weights: checkpoint file for a zoo name (skips the download).
            clip_weights: open_clip state-dict file for checkpoints without CLIP weights.
            inference: overrides of :class:`InferenceConfig` fields, e.g. ``{"min_size": 1024}``.
        """
        resolve_device(device)
        ckpt = resolve_checkpoint(name_or_path, weights=weights, progress=progress)
        model = build_fcclip(ckpt.config)
        check_state_dict(model, ckpt.state_dict, source=ckpt.source, allow_missing_clip=not ckpt.has_clip)
        model.load_state_dict(ckpt.state_dict, strict=False)
        if not ckpt.has_clip or clip_weights:
            origin = load_clip_weights(model, ckpt.config, clip_weights)
            log(f"CLIP weights not in {ckpt.source}: loaded from {origin}" if not ckpt.has_clip
                else f"CLIP weights replaced by {origin}")
        settings = InferenceConfig.from_dict({**ckpt.inference.to_dict(), **(inference or {})})
        return cls(model, ckpt.config, settings, train_vocabulary=ckpt.train_vocabulary, device=device, text_cache=text_cache)

    # ---- vocabulary -------------------------------------------------------------------------
    def set_vocabulary(self, vocabulary: str | Vocabulary | None = None, *, progress: bool | None = None) -> Vocabulary:
        """Sets the classes to find (built-in name, file, inline text; None = the demo's default)."""
        vocab = default_vocabulary() if vocabulary is None else resolve_vocabulary(vocabulary)
        if len(vocab) == 0:
            raise ValueError("the vocabulary is empty: give at least one class, e.g. --vocab 'cat; dog'")
        classifier = self.text_cache.get_or_build(vocab, self._text_encoder.encode, self._text_encoder.encoder_id,
                                                  progress=progress)
        self.vocabulary = vocab
        self._text_classifier = classifier.embeddings.to(self.device)
        self._synonym_counts = list(classifier.synonym_counts)
        self._seen = torch.tensor(seen_mask(vocab, self.train_vocabulary), device=self.device)
        return vocab

    # ---- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, images) -> list[RawOutput]:
        """Model outputs for a list of images (paths, PIL images or uint8 arrays)."""
        if self.vocabulary is None:
            raise RuntimeError("no vocabulary set: call set_vocabulary(...) first")
        arrays = [load_image(img) for img in images]
        resized = [resize_image(a, self.inference.min_size, self.inference.max_size) for a in arrays]
        tensors = [torch.from_numpy(np.ascontiguousarray(r.transpose(2, 0, 1))).to(self.device) for r in resized]
        batch, sizes = normalize_and_pad(tensors, self.config.pixel_mean, self.config.pixel_std, self.config.size_divisibility)
        out = self.model(batch, self._text_classifier, self._synonym_counts)
        out_vocab, valid = self.model.out_of_vocab_logits(out.clip_dense, out.pred_masks, self._text_classifier, self._synonym_counts)
        mask_cls = geometric_ensemble(
            out.pred_logits, out_vocab, self._seen, alpha=self.inference.ensemble_alpha, beta=self.inference.ensemble_beta,
            valid_masks=valid if self.inference.ensemble_on_valid_mask else None,
        )
        return [
            RawOutput(out.pred_logits[i], out_vocab[i], mask_cls[i], out.pred_masks[i], sizes[i], arrays[i].shape[:2])
            for i in range(len(arrays))
        ]

    def predict(self, images, task: str | tuple[str, ...] = "panoptic", *, batch_size: int = 1):
        """Segments one image (returns a Prediction) or a list (returns a list)."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        tasks = TASKS if task == "all" else ((task,) if isinstance(task, str) else tuple(task))
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task {unknown[0]!r}; choose panoptic, semantic, instance or all")
        results = []
        for start in range(0, len(items), batch_size):
            results.extend(self.postprocess(raw, tasks) for raw in self.run(items[start:start + batch_size]))
        return results[0] if single else results

    def postprocess(self, raw: RawOutput, tasks) -> Prediction:
        vocab = self.vocabulary
        height, width = raw.output_size
        pred = Prediction(height, width, vocab.class_names)
        if "semantic" in tasks:
            pred.semantic = self._semantic(raw, tasks).int().cpu().numpy()
        if "panoptic" in tasks:
            pan = panoptic_inference(raw.mask_cls, raw.mask_logits, vocab.thing_mask,
                                     object_mask_threshold=self.inference.object_mask_threshold,
                                     overlap_threshold=self.inference.overlap_threshold)
            pred.panoptic = pan.segment_map.cpu().numpy()
            areas = np.bincount(pred.panoptic.ravel(), minlength=len(pan.segments) + 1)
            pred.segments = [Segment(s["id"], s["category_id"], vocab.class_names[s["category_id"]], s["isthing"],
                                     s["score"], int(areas[s["id"]])) for s in pan.segments]
        if "instance" in tasks:
            inst = instance_inference(raw.mask_cls, raw.mask_logits, vocab.thing_mask, top_k=self.inference.instances_per_image)
            pred.instance_masks = inst.masks.cpu().numpy()
            pred.instance_scores = inst.scores.float().cpu().numpy()
            pred.instance_classes = inst.classes.cpu().numpy()
        return pred

    @staticmethod
    def _semantic(raw: RawOutput, tasks) -> torch.Tensor:
        """Semantic labels in the reference's order of operations.

        With panoptic or instance output the masks are resized to the image first and scored
        there; semantic alone scores the padded-resolution masks and resizes the class scores.
        """
        if "panoptic" in tasks or "instance" in tasks:
            return semantic_labels(raw.mask_cls, raw.mask_logits)
        return semantic_labels(raw.mask_cls, raw.padded_mask_logits(),
                               resize=lambda scores: crop_and_resize(scores, raw.input_size, raw.output_size))
