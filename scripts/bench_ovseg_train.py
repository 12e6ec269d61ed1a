"""Times one real-size step of each OVSeg training stage and prints its peak memory. Not a test.

(a) a proposal-generator iteration (Swin-B + frozen ViT-L/14, 640 crops, MaskFormer losses);
(b) mining one COCO-size image (100 proposals cut out and encoded by ViT-L/14, caption nouns);
(c) a CLIP-adaptation iteration (ViT-L/14 image tower, 224 crops, contrastive);
(d) a mask-prompt-tuning iteration (ViT-L/14 frozen but for the mask embedding, depth 3).
Random weights and synthetic data (a step costs the same whatever the values). Each stage runs
in its own process, so the peak resident memory (CPU) or peak allocated memory (CUDA) is its own.

    PYTHONPATH=src python scripts/bench_ovseg_train.py                          # CPU, small batches
    PYTHONPATH=src python scripts/bench_ovseg_train.py --device cuda --amp fp16 --batch-a 4 --batch-clip 32
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

STAGES = {"a": "proposal generator step", "b": "mining one image", "c": "CLIP adaptation step",
          "d": "mask prompt tuning step"}


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def proposal_trainer(args, folder: Path, device: torch.device):
    from vocabseg.train.build import build_trainer
    from vocabseg.train.config import load_config

    config = load_config("ovseg_swinb_vitl_coco_stuff", [
        f"output={folder / 'a'}", f"text_cache={folder / 'text'}", f"device={device.type}", "model.load_clip=false",
        "data.format=synthetic", "data.num_images=8", "data.num_workers=0", "eval.dataset=null",
        f"solver.batch_size={args.batch_a}", f"solver.batch_per_gpu={args.batch_a}", f"solver.amp={args.amp}",
        "solver.checkpoint_period=0", "solver.log_period=0"])
    return build_trainer(config, device=device)


def stage_a(args, folder: Path, device: torch.device) -> dict:
    trainer = proposal_trainer(args, folder, device)
    batches = trainer.batch_stream()
    times = timed(lambda: trainer.step(batches), args.steps + 1, device)[1:]  # the first step warms up
    return {"batch": args.batch_a, "crop": 640, "seconds": times}


def stage_b(args, folder: Path, device: torch.device) -> dict:
    from vocabseg.testing import synthetic_photo
    from vocabseg.train.ovseg.mining.miner import MiningSettings, SegmenterMatcher, mine_image

    trainer = proposal_trainer(args, folder, device)
    model = trainer.model
    matcher = SegmenterMatcher(model, trainer.model_settings, mask_threshold=0.4, min_objectness=0.0, chunk=32,
                               device=device)
    image = synthetic_photo(480, 640)
    captions = ["A man riding a wave on top of a surfboard next to a dog."]
    regions = []

    def mine_once():
        with torch.no_grad():
            pairs, _ = mine_image(image, captions, matcher, MiningSettings())
        regions.append(len(pairs))

    times = timed(mine_once, args.steps + 1, device)[1:]
    return {"image": "480x640", "queries": model.config.num_queries, "pairs": regions[-1], "seconds": times}


def clip_stage(stage: str, args, folder: Path, device: torch.device) -> dict:
    from vocabseg.train.ovseg.adapt import ClipTrainer
    from vocabseg.train.ovseg.config import stage_config_from_dict
    from vocabseg.train.ovseg.mining.pairs import PairWriter

    pairs = folder / "pairs"
    if not (pairs / "pairs.jsonl").is_file():
        writer, rng = PairWriter(pairs, settings={"bench": True}), np.random.default_rng(0)
        for k in range(2 * args.batch_clip):
            mask = np.zeros((224, 224), bool)
            mask[40:180, 30:200] = True
            writer.add(f"{k}.jpg", [(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), mask, f"noun{k}", 1.0, "")])
    config = stage_config_from_dict({
        "stage": stage, "output": str(folder / stage), "device": device.type,
        "clip": {"model": "ViT-L-14", "pretrained": "none", "mask_prompt_depth": 3},
        "data": {"root": str(pairs), "num_workers": 0},
        "solver": {"batch_size": args.batch_clip, "batch_per_gpu": args.batch_clip, "amp": args.amp,
                   "max_iter": 100, "checkpoint_period": 0, "log_period": 0}})
    trainer = ClipTrainer(config, device=device)
    batches = trainer._batches()
    times = timed(lambda: trainer.step(batches), args.steps + 1, device)[1:]
    trainable = sum(p.numel() for p in trainer.trainable)
    return {"batch": args.batch_clip, "trainable_params": trainable, "seconds": times}


def run_one(args) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.only == "a":
            result = stage_a(args, folder, device)
        elif args.only == "b":
            result = stage_b(args, folder, device)
        else:
            result = clip_stage("adapt" if args.only == "c" else "prompt", args, folder, device)
    result["peak_memory_gib"] = round(peak_memory_gib(device), 2)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="abcd", help="which of a, b, c, d to run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", help="off | fp16 | bf16 (official: fp16 for c and d)")
    parser.add_argument("--batch-a", type=int, default=1, help="images per proposal-generator step (official: 4/GPU)")
    parser.add_argument("--batch-clip", type=int, default=4, help="crops per CLIP step (official: 32/GPU)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--only", choices=sorted(STAGES), help=argparse.SUPPRESS)  # one stage, in this process
    args = parser.parse_args()
    if args.only:
        run_one(args)
        return
    print(f"device {args.device}, amp {args.amp}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for stage in args.stages:
        argv = [a for a in sys.argv[1:] if not a.startswith("--stages")]
        proc = subprocess.run([sys.executable, __file__, *argv, "--only", stage], capture_output=True, text=True,
                              env=os.environ)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"({stage}) {STAGES[stage]}: failed\n{proc.stderr[-2000:]}")
            continue
        result = json.loads(line[len("RESULT "):])
        seconds = result.pop("seconds")
        details = ", ".join(f"{k} {v}" for k, v in result.items())
        print(f"({stage}) {STAGES[stage]}: {min(seconds):.2f} s (best of {len(seconds)}), {details}", flush=True)


if __name__ == "__main__":
    main()
