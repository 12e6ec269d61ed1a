"""`vocabseg export-labels`: a predict run folder's results as labels other tools import (COCO JSON)."""
from __future__ import annotations

import argparse


def cmd_export_labels(args: argparse.Namespace) -> None:
    from vocabseg.integrations.coco import export_coco

    wrote = export_coco(args.run_folder, args.output, task=args.task, images=args.images)
    what = "instance annotations" if wrote["task"] == "instance" else "panoptic segments"
    print(f"wrote {args.output}: COCO {wrote['task']}, {wrote['images']} image(s), {wrote['annotations']} {what}, "
          f"{wrote['categories']} categories")


def add_export_labels_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-labels", help="write a predict run folder's results as COCO JSON")
    p.add_argument("run_folder", help="the --output folder of `vocabseg predict` (only images in run.done count)")
    p.add_argument("--format", choices=["coco"], default="coco", help="label format (default: coco)")
    p.add_argument("--task", choices=["instance", "panoptic"],
                   help="instance: COCO object annotations with RLE masks; panoptic: one COCO panoptic JSON whose "
                        "file names are the run's panoptic/*.png (default: instance if the run has it)")
    p.add_argument("--images", metavar="DIR",
                   help="the folder the run's images came from: image entries name those files (default: the "
                        "overlays in the run folder, which have the images' sizes)")
    p.add_argument("--output", required=True, help="the JSON file to write (written whole or not at all)")
    p.set_defaults(func=cmd_export_labels)
