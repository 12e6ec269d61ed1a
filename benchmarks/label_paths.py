"""Throughput of each way to label a folder (README "Label a dataset"): images/s on this machine.

    python benchmarks/label_paths.py [--model tiny|PATH --weights ...] [--images 32] [--size 480x640]

Paths: `vocabseg predict` in-process; the same under `torchrun --nproc_per_node 2` (1 thread a
rank); Ray Data on a local cluster (2 actors x 1 thread); FiftyOne
`apply_predictor`; then the conversions of a run folder (COCO export, FiftyOne import) and
`Prediction.to_supervision()`. Each model path runs on 2 and on N images: images/s is
(N - 2) / (t_N - t_2), so model loading and actor start-up cancel out (N of 32 or more
keeps the start-up's jitter, a few seconds for Ray, small against the work). The tiny model is
vocabseg.testing's seeded FC-CLIP (ConvNeXt-atto CLIP), tested at the photos' own size.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from vocabseg.testing import save_tiny_checkpoint, synthetic_photo

VOCAB = "car; person; bicycle; dog; road [stuff]; sky [stuff]; tree [stuff]; building [stuff]"
TASKS = ("semantic", "panoptic", "instance")


def photos(root: Path, count: int, height: int, width: int) -> Path:
    folder = root / f"photos{count}"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.fromarray(synthetic_photo(height, width, seed=k)).save(folder / f"p{k:03d}.png")
    return folder


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def rate(label: str, count: int, small: float, large: float) -> None:
    print(f"{label:<40} {count - 2} images in {large - small:6.1f} s: {(count - 2) / (large - small):6.2f} images/s "
          f"(whole job of {count}: {large:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--weights")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", default="480x640", help="HEIGHTxWIDTH of the synthetic photos")
    parser.add_argument("--skip", nargs="*", default=[], choices=["predict", "torchrun", "ray", "fiftyone"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the in-process paths (Ray: 2 actors of 1 thread each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = map(int, args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="vocabseg-label-bench-"))
    os.environ.setdefault("VOCABSEG_CACHE", str(root / "text"))
    model = args.model
    if model == "tiny":
        model = str(save_tiny_checkpoint(root / "tiny.pth", min_size=height, max_size=width))
    small, large = photos(root, 2, height, width), photos(root, args.images, height, width)
    model_args = ["--model", model] + (["--weights", args.weights] if args.weights else [])
    print(f"model {args.model}, {args.images} photos of {width}x{height}, tasks {', '.join(TASKS)}, "
          f"torch threads {torch.get_num_threads()}")

    from vocabseg.cli import main as cli

    def predict(folder: Path, out: Path) -> None:
        assert cli(["-q", "predict", str(folder), *model_args, "--vocab", VOCAB, "--task", "all", "--output",
                    str(out)]) == 0

    predict(small, root / "warm")  # text embeddings cached, as for every later run
    if "predict" not in args.skip:
        rate("vocabseg predict (one process)", args.images, timed(lambda: predict(small, root / "p2")),
             timed(lambda: predict(large, root / "pN")))
    else:
        predict(large, root / "pN")
    if "torchrun" not in args.skip:
        torchrun_rate(model_args, small, large, args.images, root)
    if "ray" not in args.skip:
        ray_rate(model, args.weights, small, large, args.images)
    conversions(root / "pN", large, args.images, root)
    if "fiftyone" not in args.skip:
        fiftyone_rate(model, args.weights, small, large, args.images, height, width)
    shutil.rmtree(root, ignore_errors=True)


def torchrun_rate(model_args: list[str], small: Path, large: Path, count: int, root: Path) -> None:
    """`vocabseg predict` sharded over two ranks of one thread each (the job's start-up cancels out)."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def job(folder: Path, out: Path) -> None:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "vocabseg.cli",
                   "-q", "predict", str(folder), *model_args, "--vocab", VOCAB, "--task", "all", "--output", str(out)]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)

    rate("torchrun predict, 2 ranks of 1 thread", count, timed(lambda: job(small, root / "t2")),
         timed(lambda: job(large, root / "tN")))


def ray_rate(model: str, weights: str | None, small: Path, large: Path, count: int) -> None:
    import ray

    from vocabseg.integrations.ray import label_dataset

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20, log_to_driver=False)

    def job(folder: Path) -> None:
        ds = ray.data.read_images(str(folder), include_paths=True, mode="RGB")
        rows = label_dataset(ds, model, VOCAB, actors=2, num_cpus=0.5, tasks=TASKS, weights=weights,
                             num_threads=1).take_all()
        assert len(rows) == len(list(folder.iterdir()))

    rate("Ray Data, local 2-CPU cluster, 2 actors", count, timed(lambda: job(small)), timed(lambda: job(large)))
    ray.shutdown()


def conversions(run: Path, images: Path, count: int, root: Path) -> None:
    from vocabseg.integrations.coco import export_coco
    from vocabseg.integrations.run_folder import read_run_folder

    took = timed(lambda: export_coco(run, root / "labels.json", task="instance", images=images))
    print(f"{'COCO export (instances) of the run folder':<40} {count / took:6.1f} images/s")
    took = timed(lambda: export_coco(run, root / "panoptic.json", task="panoptic", images=images))
    print(f"{'COCO export (panoptic) of the run folder':<40} {count / took:6.1f} images/s")
    folder = read_run_folder(run)
    preds = [folder.prediction(stem) for stem in folder.stems]
    try:
        took = timed(lambda: [pred.to_supervision() for pred in preds])
        print(f"{'Prediction.to_supervision()':<40} {count / took:6.1f} images/s")
    except Exception as error:  # supervision not installed
        print(f"to_supervision: {error}")


def fiftyone_rate(model: str, weights: str | None, small: Path, large: Path, count: int, height: int,
                  width: int) -> None:
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone as fo

    from vocabseg.integrations.fiftyone import apply_predictor, import_run_folder
    from vocabseg.predictor import Predictor

    predictor = Predictor.from_pretrained(model, weights=weights, progress=False)
    predictor.set_vocabulary(VOCAB, progress=False)

    def apply(folder: Path) -> None:
        dataset = fo.Dataset()
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in sorted(folder.iterdir())])
        apply_predictor(dataset, predictor, tasks=TASKS)
        dataset.delete()

    apply(small)  # the database started
    rate("FiftyOne apply_predictor", count, timed(lambda: apply(small)), timed(lambda: apply(large)))
    run = large.parent / "pN"
    took = timed(lambda: import_run_folder(run, images=large).delete())
    print(f"{'FiftyOne import of the run folder':<40} {count / took:6.1f} images/s")


if __name__ == "__main__":
    main()
