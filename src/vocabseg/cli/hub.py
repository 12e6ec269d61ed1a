"""`vocabseg push`: share a checkpoint as safetensors + config.json, on the Hugging Face Hub or in a folder."""
from __future__ import annotations

import argparse


def cmd_push(args: argparse.Namespace) -> None:
    from vocabseg.checkpoints import push_checkpoint

    where = push_checkpoint(args.model, repo_id=args.repo, local_dir=args.local_dir, weights=args.weights,
                            clip_weights=args.clip_weights, revision=args.revision, private=args.private)
    print(f"wrote {where}")


def download_hub(name: str) -> None:
    """``vocabseg download hf-hub:org/name[@revision]``: fills huggingface_hub's cache, prints the folder."""
    from vocabseg.hub import download_pretrained

    print(download_pretrained(name))


def add_hub_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="share a checkpoint (safetensors + config.json) on the Hugging Face Hub "
                                    "or in a local folder laid out as the hub repository")
    p.add_argument("model", help="zoo name (with --weights), checkpoint file, shared folder or hf-hub:org/name")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--repo", help="hub model repository ORG/NAME (created if missing; needs `hf auth login`)")
    target.add_argument("--local-dir", help="write the repository's files into this folder instead")
    p.add_argument("--weights", help="checkpoint file for a zoo model (instead of downloading)")
    p.add_argument("--clip-weights", help="open_clip state dict, for checkpoints without the frozen CLIP")
    p.add_argument("--revision", help="hub branch to push to (default: main)")
    p.add_argument("--private", action="store_true", help="create the hub repository as private")
    p.set_defaults(func=cmd_push)
