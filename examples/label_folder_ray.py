"""Label a folder of images with Ray Data and write the results as Parquet.

    pip install "vocabseg[ray]"
    python examples/label_folder_ray.py photos/ --model fcclip_rn50_coco --vocab "car; person; road [stuff]" \
        --tasks semantic panoptic --output labels/ --actors 4 --num-gpus 0.5

On a cluster, start Ray there (`ray start --head`, then `ray start --address=...` on each
node) and pass `--address auto`; the folder, the checkpoint (--weights) and the output must be
reachable from every node (a shared file system or s3://...). Each Parquet row holds the
image's path, height, width, the maps (semantic / panoptic as [H, W] int32 tensors),
segments and instances as JSON, and the class names (see vocabseg.integrations.ray).
"""
from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="images to label (a local folder, or any path ray.data.read_images reads)")
    parser.add_argument("--model", required=True, help="zoo name, checkpoint path or hf-hub: name")
    parser.add_argument("--weights", help="checkpoint file for a zoo name (visible to every node)")
    parser.add_argument("--vocab", required=True, help="built-in name, file or inline 'car; person; road [stuff]'")
    parser.add_argument("--tasks", nargs="+", default=["semantic"], choices=["semantic", "panoptic", "instance"])
    parser.add_argument("--output", required=True, help="Parquet folder to write")
    parser.add_argument("--actors", type=int, default=1, help="model replicas (Ray actors)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPU share per actor (0: CPU)")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0,
                        help="CPUs reserved per actor; leave some for reading and writing (actors x this < CPUs)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per batch")
    parser.add_argument("--threads", type=int, help="torch threads per CPU actor")
    parser.add_argument("--address", help="Ray cluster address ('auto' for a running cluster; default: local)")
    args = parser.parse_args(argv)

    import ray

    from vocabseg.integrations.ray import label_dataset

    if not ray.is_initialized():
        ray.init(address=args.address)
    dataset = ray.data.read_images(args.folder, include_paths=True, mode="RGB")
    labelled = label_dataset(dataset, args.model, args.vocab, actors=args.actors, num_gpus=args.num_gpus,
                             num_cpus=args.cpus_per_actor, batch_size=args.batch_size, tasks=tuple(args.tasks),
                             weights=args.weights, num_threads=args.threads)
    labelled.write_parquet(args.output)
    print(f"wrote the labels of {args.folder} to {args.output}")


if __name__ == "__main__":
    main()
