"""`vocabseg data prepare | check | list`: get datasets ready for evaluation and training."""
from __future__ import annotations

import sys


def add_data_parser(sub) -> None:
    """Adds the ``data`` command and its sub-commands."""
    p = sub.add_parser("data", help="prepare, check and list datasets")
    data = p.add_subparsers(dest="data_command", required=True)

    q = data.add_parser("prepare", help="build the derived files of a dataset family from its raw release")
    q.add_argument("name", help="family, e.g. ade20k_150 or coco_panoptic (see `vocabseg data list`)")
    q.add_argument("--root", required=True, help="folder holding the dataset folders")
    q.add_argument("--no-progress", action="store_true", help="hide progress bars")
    q.set_defaults(func=cmd_prepare)

    q = data.add_parser("check", help="list the problems of a dataset on disk (exit code 1 if any)")
    q.add_argument("name", help="split (ade20k_panoptic_val) or family (ade20k_150: its validation splits)")
    q.add_argument("--root", required=True, help="folder holding the dataset folders")
    q.add_argument("--all", action="store_true", help="open every file (default: 50 per kind, spread out)")
    q.set_defaults(func=cmd_check)

    q = data.add_parser("list", help="list the registered splits and families")
    q.set_defaults(func=cmd_list)


def cmd_prepare(args) -> None:
    from vocabseg.data import prepare

    for line in prepare(args.name, args.root, progress=not args.no_progress):
        print(line)


def cmd_check(args) -> int:
    from vocabseg.data import check

    problems = check(args.name, args.root, sample=None if args.all else 50)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) in {args.name} under {args.root}", file=sys.stderr)
        return 1  # a status, not an error: the lines above say what to fix
    print("ok")
    return 0


def cmd_list(args) -> None:
    from vocabseg.data import get_spec, list_datasets
    from vocabseg.text import get_vocabulary

    print(f"{'split':34s} {'family (data prepare)':22s} {'classes':>7s}  tasks")
    for name in list_datasets():
        spec = get_spec(name)
        print(f"{name:34s} {spec.prepare:22s} {len(get_vocabulary(spec.vocabulary)):7d}  {','.join(spec.tasks)}")
