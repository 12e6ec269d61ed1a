"""`vocabseg predict | models | download`."""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from vocabseg.cli.common import add_model_arguments, load_predictor, positive_int
from vocabseg.errors import ConfigError
from vocabseg.zoo import get_variant, list_models

if TYPE_CHECKING:
    import numpy as np

    from vocabseg.models import ModelFamily
    from vocabseg.runs import RunRecord

logger = logging.getLogger(__name__)


def cmd_predict(args: argparse.Namespace) -> None:
    """Checks the arguments, takes the folder (rank 0 of a torchrun job for all), then runs this rank's share.

    Under torchrun the inputs are cut into batches of ``--batch-size`` in input order and batch k
    goes to rank k mod N, so every image meets the same neighbours as in one process.
    """
    from vocabseg import distributed as dist
    from vocabseg.images import expand_inputs
    from vocabseg.predictor import resolve_device
    from vocabseg.run_folder import owned_folder
    from vocabseg.runs import check_output_folder, read_done

    output = Path(args.output)
    names = expand_inputs(args.inputs, recursive=args.recursive, exclude=output)  # image -> its outputs' name
    paths = list(names)
    _check_task(args)  # from the zoo or the checkpoint's header: before anything is loaded or written
    resolve_device(dist.rank_device(args.device))
    recorded = read_done(output)  # read once: the comprehensions below would re-read it for every image
    check_output_folder(output, [p for p in paths if names[p] not in recorded])  # a first estimate
    args.device = dist.rank_device(args.device)
    created_group = dist.join_from_env(backend="gloo", timeout=_JOB_TIMEOUT)  # barriers and small gathers only
    try:
        rank, world = dist.rank_and_world()
        if not args.skip_errors:  # a bad or truncated file fails here, before the model loads
            _decode_all([p for p in _shard(paths, args.batch_size, rank, world) if names[p] not in recorded])
        with owned_folder(output, "vocabseg predict"):
            _predict_folder(args, names, output, rank, world)
    finally:
        if created_group:
            dist.cleanup()


_JOB_TIMEOUT = timedelta(hours=24)  # ranks wait at the end for the slowest one


def _shard(paths: list[Path], batch_size: int, rank: int, world: int) -> list[Path]:
    """This rank's inputs: batch k (of ``batch_size`` in input order) goes to rank k mod ``world``."""
    return [p for index, p in enumerate(paths) if (index // batch_size) % world == rank]


def _predict_folder(args: argparse.Namespace, names: dict[Path, str], output: Path, rank: int, world: int) -> None:
    """This rank's share of ``names`` (image -> its outputs' name), written into ``output``."""
    from tqdm import tqdm

    from vocabseg import distributed as dist
    from vocabseg.downloads import sha256_of
    from vocabseg.outputs import write_prediction
    from vocabseg.run_folder import check_kind
    from vocabseg.runs import ERRORS_FILE, RunRecord, count_rank_done, merge_rank_files, previous_done, run_identity

    dist.on_main_first(lambda: check_kind(output, "predict"))
    paths = list(names)
    done = previous_done(output, list(names.values()), overwrite=args.overwrite)
    todo = [p for p in paths if names[p] not in done]
    mine = [p for p in _shard(paths, args.batch_size, rank, world) if names[p] not in done]
    if args.fast:
        args.settings.append(("precision", "fast"))
    predictor = load_predictor(args)
    vocab = predictor.set_vocabulary(args.vocab, text_embeddings=args.text_embeddings)
    # Default: the family's first task, its paper's own output (FC-CLIP panoptic, OVSeg semantic).
    tasks = predictor.family.tasks if args.task == "all" else (args.task or predictor.family.tasks[0],)
    predictor.predict([], task=tasks)  # checks the tasks against the model before run.json is written
    record = RunRecord(output, rank=rank, world_size=world)
    source = {"model": args.model, "weights": args.weights, "clip_weights": args.clip_weights}
    identity = run_identity(predictor, vocab, tasks, args.batch_size)
    if args.text_embeddings:  # other embeddings, other results
        identity["text_embeddings"] = sha256_of(Path(args.text_embeddings))
    order = [names[p] for p in paths]
    dist.on_main_first(lambda: record.start(identity, source, done, overwrite=args.overwrite, order=order))
    if len(todo) < len(paths) and rank == 0:  # said only once the run is known to be the one that did them
        logger.info("skipping %d image(s) already done in %s (--overwrite to redo)", len(paths) - len(todo), output)
    show = bool(todo) and rank == 0 and logger.isEnabledFor(logging.INFO)  # -q: no bar either
    with tqdm(total=len(todo), desc="predict", unit="img", disable=not show) as bar:
        chunks = [mine[start:start + args.batch_size] for start in range(0, len(mine), args.batch_size)]
        for chunk, loaded in zip(chunks, _decoded_chunks(chunks, record if args.skip_errors else None)):
            images = [image for _, image in loaded]
            predictions = predictor.predict(images, task=tasks, batch_size=args.batch_size) if images else []
            for (path, image), prediction in zip(loaded, predictions, strict=True):
                write_prediction(output, names[path], image, prediction, vocab)
                record.mark_done(names[path])  # after all of the image's files: a half-written image is redone
            if rank == 0:  # the job's progress: under torchrun, every rank's done file
                bar.update(len(chunk) if world == 1 else count_rank_done(output) - bar.n)
        dist.barrier()  # every rank's images are written
        if world > 1 and rank == 0:
            merge_rank_files(output, order)
            bar.update(len(todo) - bar.n)
    errors = sum(dist.all_gather_object(len(record.errors)))
    if rank == 0:
        print(f"wrote {len(todo) - errors} result(s) for {len(vocab)} classes to {output}")
        if errors:
            logger.warning("skipped %d image(s) that could not be read; see %s", errors, output / ERRORS_FILE)


def _check_task(args: argparse.Namespace) -> None:
    """Refuses a --task the model's family does not give, from the zoo or the checkpoint's header."""
    family = _model_family(args.model, args.weights)
    if family is not None and args.task not in (None, "all") and args.task not in family.tasks:
        raise ConfigError(f"{family.title} models give {', '.join(family.tasks)} output, not {args.task}; "
                          "choose another --task")


def _model_family(model: str, weights: str | None) -> ModelFamily | None:
    """The family of ``--model`` without building it (None: known only once loaded, e.g. hf-hub:)."""
    import torch

    from vocabseg import hub
    from vocabseg.models import FAMILIES, get_family

    if model in list_models():
        return get_family(get_variant(model).family)
    path = Path(weights or model)
    try:
        if hub.is_pretrained(path):
            header = json.loads((path if path.is_dir() else path.parent).joinpath(hub.CONFIG_NAME).read_text())
        else:  # mmap: the header and the key names are read, not the tensors
            header = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable here: the loader says what is wrong in its own words
        return None
    if not isinstance(header, dict):
        return None
    if header.get("format") == "vocabseg" and header.get("family") in FAMILIES:
        return get_family(header["family"])
    state = header.get("model", header.get("state_dict", header))
    return next((f for f in FAMILIES.values() if isinstance(state, dict) and f.is_official(state)), None)


def _decode_all(paths: list[Path]) -> None:
    """Decodes every image once, keeping none, so a truncated file fails before the model loads.

    Opening or ``verify()`` reads headers only; a JPEG cut short shows only when its pixels are decoded.
    """
    from vocabseg.images import load_image

    for path in paths:
        load_image(path)


def _decoded_chunks(chunks: list[list[Path]], record: RunRecord | None) -> Iterator[list[tuple[Path, np.ndarray]]]:
    """``(path, HxWx3 uint8 image)`` of each chunk's readable paths, the next chunk decoded in a thread
    while the caller runs the model on this one; unreadable ones go to ``record`` (None: raise)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_decode, chunks[0]) if chunks else None
        for index in range(len(chunks)):
            assert pending is not None
            decoded = pending.result()
            pending = pool.submit(_decode, chunks[index + 1]) if index + 1 < len(chunks) else None
            yield _readable(decoded, record)


def _decode(paths: list[Path]) -> list[tuple[Path, np.ndarray | Exception]]:
    """Each path's image, or the ImageError that reading it raised (recorded by the caller's thread)."""
    from vocabseg.errors import ImageError
    from vocabseg.images import load_image

    decoded: list[tuple[Path, np.ndarray | Exception]] = []
    for path in paths:
        try:
            decoded.append((path, load_image(path)))
        except ImageError as error:
            decoded.append((path, error))
    return decoded


def _readable(decoded: list[tuple[Path, np.ndarray | Exception]], record: RunRecord | None,
              ) -> list[tuple[Path, np.ndarray]]:
    loaded = []
    for path, image in decoded:
        if isinstance(image, Exception):
            if record is None:
                raise image
            logger.warning("skipping %s: %s", path, image)
            record.add_error(path, str(image))
        else:
            loaded.append((path, image))
    return loaded


def cmd_models(args: argparse.Namespace) -> None:
    from vocabseg.models import get_family

    rows = []
    for name in list_models():
        variant = get_variant(name)
        family = get_family(variant.family)
        rows.append((name, family.title, family.describe(variant.config).get("backbone", ""), ",".join(family.tasks),
                     _headline(variant.reported)))
    header = ("name", "family", "backbone", "tasks", "paper")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)) + "  " + row[-1])


def _headline(reported: dict[str, float]) -> str:
    """The paper's headline figure of a variant: ADE20K-150 mIoU, or a zero-shot benchmark's unseen mIoU and hIoU."""
    if "ade20k_miou" in reported:
        return f"A-150 mIoU {reported['ade20k_miou']:.1f}"
    hiou = next((key for key in reported if key.endswith("_hiou")), None)
    if hiou is None:
        return "-"
    benchmark = hiou.removesuffix("_hiou")
    return f"{benchmark} unseen mIoU {reported[benchmark + '_miou_unseen']:.1f}, hIoU {reported[hiou]:.1f}"


def cmd_download(args: argparse.Namespace) -> None:
    from vocabseg.cli.hub import download_hub
    from vocabseg.downloads import fetch_official_weights

    for name in args.models:
        if name.startswith("hf-hub:"):
            download_hub(name)
        else:
            print(fetch_official_weights(get_variant(name)))


def add_predict_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images with a vocabulary")
    p.add_argument("inputs", nargs="+", help="image files or directories")
    p.add_argument("--recursive", action="store_true",
                   help="also read the images in subfolders of input directories; outputs keep their relative "
                        "paths (day1/a.jpg -> OUTPUT/day1/a_overlay.png, ...)")
    add_model_arguments(p)
    p.add_argument("--fast", action="store_true",
                   help="fast mode (--set precision=fast; the default on CUDA): bf16 where the device computes "
                        "it natively, else float32 with the fast algorithms; `vocabseg bench` prints the "
                        "choice and its deviation from exact fp32")
    p.add_argument("--vocab",
                   help="built-in name, file, or inline 'car; person; road [stuff]' (default: COCO+ADE+LVIS)")
    p.add_argument("--text-embeddings", metavar="NPY",
                   help="precomputed class embeddings [classes, width] in --vocab order, used as they are instead "
                        "of encoding the vocabulary (e.g. Cascade-CLIP's official .npy files)")
    p.add_argument("--task", choices=["panoptic", "semantic", "instance", "all"],
                   help="default: the model's own output (FC-CLIP panoptic, OVSeg semantic, Cascade-CLIP semantic)")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the results of the run in OUTPUT and redo every image (needed to change the model, "
                        "vocabulary, tasks or settings of a folder that holds results)")
    p.add_argument("--skip-errors", action="store_true",
                   help="record unreadable images in OUTPUT/errors.json and go on; the exit status stays 0 and a "
                        "warning gives their count (default: check every image before loading the model and stop "
                        "at the first unreadable one)")
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="images per forward pass (1 reproduces the official per-image results exactly)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list the model variants")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("download", help="download official checkpoints (or hf-hub: ones) into the cache")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help=f"zoo name ({', '.join(list_models())}) or hf-hub:org/name[@revision]")
    p.set_defaults(func=cmd_download)
