"""Times training iterations of the real-size FC-CLIP (ConvNeXt-Large CLIP, 250 queries).

Random weights, synthetic images, a random text classifier with COCO's synonym
layout: the cost of a step does not depend on the values. Not a test.

    PYTHONPATH=src python benchmarks/train_step.py                 # CPU, 512x512, batch 1
    PYTHONPATH=src python benchmarks/train_step.py --size 1024     # the official crop size
    PYTHONPATH=src python benchmarks/train_step.py --device cuda --amp fp16 --size 1024 --batch 2
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from steps import summary, time_steps

from vocabseg.losses import build_criterion
from vocabseg.models import get_family
from vocabseg.models.fcclip import FCCLIPConfig, build_fcclip
from vocabseg.text import TextClassifier, TextEmbeddings, get_vocabulary, synonym_counts
from vocabseg.train.data import TrainDataset
from vocabseg.train.loop import LoopSettings, Trainer
from vocabseg.train.optim import build_optimizer, build_scheduler
from vocabseg.train.sources import SyntheticShapes


def random_coco_classifier(embed_dim: int) -> TextClassifier:
    vocabulary = get_vocabulary("coco_panoptic")
    counts = synonym_counts(vocabulary)
    text = TextEmbeddings(F.normalize(torch.randn(sum(counts), embed_dim), dim=-1), counts)
    return TextClassifier.build(text, vocabulary, vocabulary)


def build(args) -> Trainer:
    config = FCCLIPConfig()
    started = time.perf_counter()
    model = build_fcclip(config)
    print(f"built {config.clip_model_name} FC-CLIP in {time.perf_counter() - started:.0f} s: "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.1f} M trainable, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f} M in all", flush=True)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.05)
    settings = LoopSettings(max_iter=args.iters + args.warmup, batch_per_gpu=args.batch, accum_steps=1, amp=args.amp,
                            clip_grad=0.01, checkpoint_period=0, eval_period=0, best_metric="", log_period=0, seed=0)
    dataset = TrainDataset(SyntheticShapes(num_images=8, size=args.size), image_size=args.size, min_scale=1.0,
                           max_scale=1.0, flip=True)
    family = get_family("fcclip")
    return Trainer(model=model, family=family, model_config=config, model_settings=family.default_settings(config),
                   criterion=build_criterion(dec_layers=config.dec_layers + 1, num_points=args.points),
                   text=random_coco_classifier(config.embed_dim), train_vocabulary="coco_panoptic", dataset=dataset,
                   optimizer=optimizer, scheduler=build_scheduler(optimizer, steps=(10**9,), gamma=0.1, warmup_iters=0,
                                                                  warmup_factor=1.0),
                   settings=settings, device=torch.device(args.device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="square training crop (official: 1024)")
    parser.add_argument("--batch", type=int, default=1, help="images per step")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--points", type=int, default=12544, help="points per mask (official: 112 x 112)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"])
    args = parser.parse_args()

    trainer = build(args)
    timed = time_steps(trainer, warmup=args.warmup, iters=args.iters)
    print(f"{args.size}x{args.size}, batch {args.batch}, {args.device}, amp {args.amp}: "
          f"{summary(timed, trainer.device)}")


if __name__ == "__main__":
    main()
