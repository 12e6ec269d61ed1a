"""Exporting a model for one fixed vocabulary: ``torch.export`` programs and ONNX files.

What is exported is the network and its classifier ensemble, the part of
``model.inference`` that runs on tensors of fixed shapes:

    images [B, 3, H, W] float32, normalised and zero-padded (as ``normalize_and_pad`` gives)
      -> mask_cls    [B, Q, K + 1] class log-probabilities, void last (ensemble applied)
      -> mask_logits [B, Q, H / 4, W / 4] mask logits
      (-> class_probs [B, Q, K] when the family scores semantic output with them, e.g. OVSeg)

The text embeddings of the vocabulary are constants of the graph. Resizing the photo, and
panoptic/semantic/instance merging, stay outside (their shapes depend on the image and on how
many segments are found): :func:`prepare_image` and :func:`to_raw_output` connect an exported
graph's inputs and outputs to :class:`vocabseg.predictor.Predictor`'s own steps. H, W and B are
fixed at export time. Steps whose shapes depend on the data (OVSeg's CLIP region crops) cannot
be exported; the error says which setting turns them off.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vocabseg.errors import ConfigError
from vocabseg.fileio import atomic_write
from vocabseg.models import InputBatch
from vocabseg.preprocess import normalize_and_pad, resize_image

logger = logging.getLogger(__name__)
OUTPUT_NAMES = ("mask_cls", "mask_logits", "class_probs")


class FixedVocabularyModel(nn.Module):
    """A predictor's model, vocabulary and settings as one module: normalised images in, query outputs out."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, predictor: Any):
        super().__init__()
        if predictor.classifier is None:
            raise ConfigError("set a vocabulary on the predictor before exporting (predictor.set_vocabulary(...))")
        self.model = predictor.model
        self.classifier = predictor.classifier
        self.settings = predictor.settings
        policy = self.model.input_policy(self.settings)
        # [1, 3, 1, 1] to undo the normalisation for families that cut regions from the uint8 image
        self.register_buffer("pixel_mean", torch.tensor(policy.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(policy.pixel_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """images: [B, 3, H, W] normalised -> (mask_cls, mask_logits[, class_probs]); see the module docstring."""
        pixels = (images * self.pixel_std + self.pixel_mean).round().clamp(0, 255).to(torch.uint8)  # [B, 3, H, W]
        sizes = [(images.shape[-2], images.shape[-1])] * images.shape[0]
        out = self.model.inference(InputBatch(images, sizes, list(pixels)), self.classifier, self.settings)
        outputs = (out.mask_cls, out.mask_logits)
        return outputs if out.class_probs is None else (*outputs, out.class_probs)


def prepare_image(predictor: Any, image: np.ndarray, height: int, width: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """An HxWx3 uint8 photo as the exported graph's input: the predictor's resize, then normalised and
    zero-padded to ``height`` x ``width``. Returns [1, 3, height, width] and the resized size inside it."""
    policy = predictor.model.input_policy(predictor.settings)
    resized = resize_image(image, policy.min_size, policy.max_size)
    if resized.shape[0] > height or resized.shape[1] > width:
        raise ConfigError(f"the resized image is {resized.shape[1]}x{resized.shape[0]}, larger than the exported "
                          f"input {width}x{height}: export with a larger --size or lower --max-size")
    tensor = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    batch, sizes = normalize_and_pad([tensor], policy.pixel_mean, policy.pixel_std, policy.size_divisibility)
    padded = batch.new_zeros(1, 3, height, width)  # zero = the mean colour after normalisation, as the padding
    padded[..., :batch.shape[-2], :batch.shape[-1]] = batch
    return padded, sizes[0]


def to_raw_output(outputs, input_size: tuple[int, int], output_size: tuple[int, int], mask_stride: int = 4):
    """One image's exported outputs (tensors or numpy arrays, batch first) as a ``RawOutput`` for
    ``Predictor.postprocess``."""
    from vocabseg.predictor import RawOutput

    tensors = [(o.detach() if isinstance(o, torch.Tensor) else torch.from_numpy(np.asarray(o)))[0] for o in outputs]
    return RawOutput(tensors[0], tensors[1], mask_stride, input_size, output_size,
                     class_probs=tensors[2] if len(tensors) > 2 else None)


def export_program(predictor: Any, *, height: int, width: int, batch_size: int = 1) -> torch.export.ExportedProgram:
    """``torch.export`` of :class:`FixedVocabularyModel` for inputs [batch_size, 3, height, width]."""
    divisor = predictor.model.input_policy(predictor.settings).size_divisibility
    if height % divisor or width % divisor:
        raise ConfigError(f"--size {width}x{height}: both sides must be multiples of {divisor} (the model's padding)")
    module = FixedVocabularyModel(predictor).eval()
    example = torch.zeros(batch_size, 3, height, width, device=predictor.device)
    try:
        with torch.no_grad():
            program = torch.export.export(module, (example,))
    except Exception as error:  # torch.export raises many types for untraceable code
        raise ConfigError(
            f"this model's inference cannot be exported with these settings ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0][:160]}); steps whose shapes depend on the image must be off, "
            "e.g. --set clip_ensemble=false for OVSeg (the proposal branch alone); Cascade-CLIP's sliding-window "
            "scores are not exported") from None
    # Inlines the regions the model runs with autocast disabled (float32 islands of fast mode): as
    # higher-order ops they carry no shape metadata, and torch.export.save refuses them.
    return program.run_decompositions({})


def save_program(program: torch.export.ExportedProgram, path: str | os.PathLike) -> Path:
    """A ``.pt2`` file that ``torch.export.load`` reads."""
    return atomic_write(path, lambda p: torch.export.save(program, p))


def save_onnx(program: torch.export.ExportedProgram, path: str | os.PathLike, *, opset: int = 18) -> Path:
    """The exported program as ONNX (torch's dynamo exporter, which needs onnx and onnxscript)."""
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the [export] extra: pip install 'vocabseg[export]'") from None
    names = list(OUTPUT_NAMES[:len(output_shapes(program))])
    example = torch.zeros(input_shape(program))
    onnx_program = torch.onnx.export(program, args=(example,), input_names=["images"], output_names=names,
                                     opset_version=opset, dynamo=True, verbose=False)
    assert onnx_program is not None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Weights over ~1.5 GB go to "<name>.data" beside the graph, which refers to it by name: both are
    # written under their final names in a hidden folder, then moved in (data first, graph last), so
    # no partial or misnamed file is left, whatever the model's size.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as staging:
        staged = Path(staging) / path.name
        onnx_program.save(str(staged))
        for produced in sorted(Path(staging).iterdir(), key=lambda p: p == staged):
            os.replace(produced, path.parent / produced.name)
    return path


def input_shape(program: torch.export.ExportedProgram) -> list[int]:
    """[B, 3, H, W] of the program's image input."""
    placeholder = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature
                       .user_inputs)
    return [int(d) for d in placeholder.meta["val"].shape]


def output_shapes(program: torch.export.ExportedProgram) -> list[list[int]]:
    """Shapes of the program's outputs, in :data:`OUTPUT_NAMES` order."""
    node = next(n for n in program.graph.nodes if n.op == "output")
    return [[int(d) for d in out.meta["val"].shape] for out in node.args[0]]


def describe_export(predictor: Any, program: torch.export.ExportedProgram) -> dict[str, Any]:
    """JSON-able facts a deployment needs beside the graph: classes, shapes, resize and normalisation."""
    policy = predictor.model.input_policy(predictor.settings)
    shape, outputs = input_shape(program), output_shapes(program)
    return {"family": predictor.family.name,
            "input": {"name": "images", "shape": shape, "pixel_mean": list(policy.pixel_mean),
                      "pixel_std": list(policy.pixel_std), "min_size": policy.min_size, "max_size": policy.max_size},
            "outputs": dict(zip(OUTPUT_NAMES, outputs)), "mask_stride": shape[-2] // outputs[1][-2],
            "classes": [{"name": c.name, "isthing": bool(c.is_thing)} for c in predictor.vocabulary.classes]}


def save_description(description: dict[str, Any], path: str | os.PathLike) -> Path:
    text = json.dumps(description, indent=1) + "\n"
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
