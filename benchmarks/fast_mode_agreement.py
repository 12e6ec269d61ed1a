"""Fast mode against exact mode on a small FC-CLIP trained on synthetic shapes.

Trains the ``fcclip_tiny_cpu`` preset (a few minutes on a 2-core CPU), then segments held-out
synthetic images in both modes and prints: semantic-label agreement, and PQ / mIoU of each mode
against the ground truth. Random-weight models say nothing here (their scores are near-ties).

Fast mode is ``--precision fast`` by default (bf16 only where native: run under
``ATEN_CPU_CAPABILITY=avx2`` for the float32 recipe) or ``--precision bf16`` (forced).

The preset's frozen CLIP is random with timm's initial layer scales (1e-6), so its ConvNeXt blocks
barely change the features and fast mode's int8 block MLPs (x86 CPUs) go unseen here.
``--clip-layer-scale 0.5`` sets those scales before training (a trained CLIP's are of that order;
the synthetic ConvNeXt-L checkpoint's 0.125), so the blocks' MLPs shape the features the heads learn.

Usage: python benchmarks/fast_mode_agreement.py [--iters 300] [--images 16] [--precision fast] [--output DIR]
       [--clip-layer-scale S]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from vocabseg.checkpoints import save_checkpoint
from vocabseg.cli.train import run_training
from vocabseg.eval.panoptic import PQStat, pq_average, pq_stats_single_image
from vocabseg.eval.semantic import confusion_matrix, semantic_metrics
from vocabseg.models import get_family
from vocabseg.predictor import Predictor
from vocabseg.train.sources import SyntheticShapes
from vocabseg.train.transforms import VOID_ID


def train(iters: int, output: Path, init: Path | None = None) -> torch.nn.Module:
    trainer = run_training(["--preset", "fcclip_tiny_cpu", f"output={output}", f"solver.max_iter={iters}",
                            f"solver.steps=[{int(iters * 0.8)},{int(iters * 0.93)}]", "data.num_images=16",
                            "solver.checkpoint_period=0", "solver.log_period=50",
                            *(["--init", str(init)] if init else [])])
    return trainer.model.eval()


def layer_scaled_init(scale: float, path: Path) -> Path:
    """A tiny FC-CLIP checkpoint whose frozen ConvNeXt CLIP has every block's layer scale set to ``scale``."""
    family = get_family("fcclip")
    config = family.tiny_config("convnext")
    torch.manual_seed(0)
    model = family.build(config)
    with torch.no_grad():
        for name, param in model.backbone.clip.visual.trunk.named_parameters():
            if name.endswith(".gamma"):
                param.fill_(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, model, family=family, config=config, settings=family.default_settings(config))


def segment(model: torch.nn.Module, images: list[np.ndarray], precision: str, vocabulary) -> list:
    family = get_family("fcclip")
    settings = family.default_settings(model.config).override({"min_size": 128, "max_size": 256,
                                                                "precision": precision})
    predictor = Predictor(model, model.config, settings, family=family)
    predictor.set_vocabulary(vocabulary, progress=False)
    return [predictor.predict(image, task=("panoptic", "semantic")) for image in images]


def scores(predictions: list, examples: list, num_classes: int, things: list[bool]) -> tuple[float, float]:
    """(PQ, mIoU) in percent against the synthetic ground truth."""
    conf = np.zeros((num_classes, num_classes + 1), dtype=np.int64)  # last column: unlabelled predictions
    stat = PQStat()
    categories = {k: {"isthing": int(t)} for k, t in enumerate(things)}
    for pred, example in zip(predictions, examples):
        gt_ids = np.where(example.ids == VOID_ID, 0, example.ids)
        gt_segments = [{"id": s.id, "category_id": s.category, "iscrowd": 0} for s in example.segments]
        semantic = np.full(gt_ids.shape, 255, dtype=np.int64)
        for s in example.segments:
            semantic[gt_ids == s.id] = s.category
        conf += confusion_matrix(semantic, np.maximum(pred.semantic, 0), num_classes)
        pred_segments = [{"id": s.id, "category_id": s.category} for s in pred.segments]
        stat += pq_stats_single_image(gt_ids, gt_segments, pred.panoptic, pred_segments, categories)
    pq = pq_average(stat, categories)[0]["pq"]
    return 100 * pq, semantic_metrics(conf)["miou"] * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--output", default="/tmp/fast_agreement")
    parser.add_argument("--precision", choices=["fast", "bf16"], default="fast", help="fast mode's precision setting")
    parser.add_argument("--clip-layer-scale", type=float, help="the frozen CLIP ConvNeXt blocks' layer scale")
    args = parser.parse_args()
    init = None
    if args.clip_layer_scale is not None:
        init = layer_scaled_init(args.clip_layer_scale, Path(f"{args.output}_init") / "init.pth")
    model = train(args.iters, Path(args.output), init)
    source = SyntheticShapes(num_images=args.images, size=128, seed=1234)  # not the training images
    examples = [source[i] for i in range(args.images)]
    images = [example.image for example in examples]
    vocabulary = source.vocabulary
    things = [c.is_thing for c in vocabulary.classes]
    exact, fast = (segment(model, images, precision, vocabulary) for precision in ("fp32", args.precision))
    same = sum(int((e.semantic == f.semantic).sum()) for e, f in zip(exact, fast))
    pixels = sum(e.semantic.size for e in exact)
    scale = "" if init is None else f", CLIP layer scale {args.clip_layer_scale}"
    print(f"{args.images} held-out 128x128 synthetic images, model trained {args.iters} iterations{scale}")
    print(f"semantic label agreement fast vs exact: {100 * same / pixels:.3f} %")
    for name, predictions in (("exact", exact), ("fast", fast)):
        pq, miou = scores(predictions, examples, len(vocabulary), things)
        print(f"{name:5s}  PQ {pq:5.1f}  mIoU {miou:5.1f}")


if __name__ == "__main__":
    main()
