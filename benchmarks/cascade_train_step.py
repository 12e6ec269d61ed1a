"""Times training iterations of the real-size Cascade-CLIP (CLIP ViT-B/16 at 512x512) and prints peak memory.

Random weights, synthetic shapes through the mmseg train pipeline, a random text classifier of
``--classes`` rows (15: VOC inductive, 20: VOC transductive, 156/171: COCO-Stuff): the cost of
a step does not depend on the values, but the focal loss grows with the classes. Not a test.

    PYTHONPATH=src python benchmarks/cascade_train_step.py                         # CPU, batch 1, 15 classes
    PYTHONPATH=src python benchmarks/cascade_train_step.py --device cuda --batch 4 --classes 156 --prompts 50
    PYTHONPATH=src python benchmarks/cascade_train_step.py --device cuda --batch 4 --transductive
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from steps import summary, time_steps

from vocabseg.models import get_family
from vocabseg.text import TextClassifier, TextEmbeddings, Vocabulary, parse_vocabulary
from vocabseg.train.cascade_clip.data import ClassSplit, DenseCollate, DenseTrainDataset
from vocabseg.train.cascade_clip.loss import CascadeCriterion
from vocabseg.train.cascade_clip.transforms import MMSegAugment
from vocabseg.train.loop import LoopSettings, Trainer
from vocabseg.train.optim import build_optimizer, build_scheduler
from vocabseg.train.sources import SyntheticShapes


def random_classifier(classes: int, embed_dim: int) -> tuple[TextClassifier, Vocabulary]:
    vocabulary = parse_vocabulary("; ".join(f"class {i}" for i in range(classes)), name="random")
    text = TextEmbeddings(F.normalize(torch.randn(classes, embed_dim), dim=-1), [1] * classes)
    return TextClassifier.build(text, vocabulary, vocabulary), vocabulary


def build(args) -> Trainer:
    family = get_family("cascade_clip")
    config = family.config_from_dict({"prompt_tokens": args.prompts})
    started = time.perf_counter()
    model = family.build(config)
    print(f"built Cascade-CLIP {config.clip_model_name} ({config.prompt_tokens} prompt tokens) in "
          f"{time.perf_counter() - started:.0f} s: "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.1f} M trainable, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f} M in all", flush=True)
    optimizer = build_optimizer(model, lr=2e-4, weight_decay=0.01, weight_decay_norm=0.01, weight_decay_embed=0.01)
    settings = LoopSettings(max_iter=args.iters + args.warmup, batch_per_gpu=args.batch, accum_steps=1, amp=args.amp,
                            clip_grad=0.0, checkpoint_period=0, eval_period=0, best_metric="", log_period=0, seed=0)
    # Shapes hold classes 0-2; transductive: the disc (1) is pseudo-labelled among all channels but 0 and 2.
    seen = (0, 2) if args.transductive else tuple(range(args.classes))
    dataset = DenseTrainDataset(SyntheticShapes(num_images=8, size=config.image_size),
                                augment=MMSegAugment(crop_size=config.image_size),
                                split=ClassSplit(args.classes, seen, transductive=args.transductive))
    text, vocabulary = random_classifier(args.classes, config.embed_dim)
    return Trainer(model=model, family=family, model_config=config, model_settings=family.default_settings(config),
                   criterion=CascadeCriterion(), text=text, train_vocabulary=vocabulary.name, dataset=dataset,
                   optimizer=optimizer,
                   scheduler=build_scheduler(optimizer, steps=(), gamma=1.0, warmup_iters=0, warmup_factor=1.0,
                                             schedule="poly", max_iter=10**6, min_lr=1e-6),
                   settings=settings, device=torch.device(args.device),
                   collate=DenseCollate(config.pixel_mean, config.pixel_std, config.image_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1, help="images per step (official: 4 per GPU)")
    parser.add_argument("--classes", type=int, default=15, help="classifier rows = mask channels")
    parser.add_argument("--prompts", type=int, default=10, help="prompt tokens (official: 10 VOC, 35 Context, 50 COCO)")
    parser.add_argument("--transductive", action="store_true", help="pseudo-label the disc pixels")
    parser.add_argument("--iters", type=int, default=2, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"], help="official: off (fp32)")
    args = parser.parse_args()
    if args.classes < 3:
        parser.error("--classes must be at least 3 (the synthetic shapes' classes)")
    trainer = build(args)
    timed = time_steps(trainer, warmup=args.warmup, iters=args.iters)
    print(f"512x512, batch {args.batch}, {args.classes} classes, {args.prompts} prompts, {args.device}, "
          f"amp {args.amp}{', transductive' if args.transductive else ''}: {summary(timed, trainer.device)}")


if __name__ == "__main__":
    main()
