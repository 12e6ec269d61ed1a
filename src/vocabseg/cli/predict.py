"""`vocabseg predict | models | download`."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vocabseg.cli.common import add_model_arguments, load_predictor, positive_int
from vocabseg.zoo import get_variant, list_models

if TYPE_CHECKING:
    import numpy as np

    from vocabseg.runs import RunRecord

logger = logging.getLogger(__name__)


def cmd_predict(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from vocabseg.downloads import sha256_of
    from vocabseg.images import expand_inputs
    from vocabseg.outputs import write_prediction
    from vocabseg.runs import ERRORS_FILE, RunRecord, check_output_folder, previous_done, run_identity

    paths = expand_inputs(args.inputs)
    output = Path(args.output)
    done = previous_done(output, [p.stem for p in paths], overwrite=args.overwrite)
    todo = [p for p in paths if p.stem not in done]
    check_output_folder(output, todo)
    if not args.skip_errors:
        _decode_all(todo)  # a bad or truncated file fails here, before the model loads
    if args.fast:
        args.settings.append(("precision", "fast"))
    predictor = load_predictor(args)
    vocab = predictor.set_vocabulary(args.vocab, text_embeddings=args.text_embeddings)
    # Default: the family's first task, its paper's own output (FC-CLIP panoptic, OVSeg semantic).
    tasks = predictor.family.tasks if args.task == "all" else (args.task or predictor.family.tasks[0],)
    record = RunRecord(output)
    source = {"model": args.model, "weights": args.weights, "clip_weights": args.clip_weights}
    identity = run_identity(predictor, vocab, tasks, args.batch_size)
    if args.text_embeddings:  # other embeddings, other results
        identity["text_embeddings"] = sha256_of(Path(args.text_embeddings))
    record.start(identity, source, done, overwrite=args.overwrite)
    if len(todo) < len(paths):  # said only once the run is known to be the same as the one that did them
        logger.info("skipping %d image(s) already done in %s (--overwrite to redo)", len(paths) - len(todo), output)
    with tqdm(total=len(todo), desc="predict", unit="img", disable=not todo) as bar:
        chunks = [todo[start:start + args.batch_size] for start in range(0, len(todo), args.batch_size)]
        for chunk, loaded in zip(chunks, _decoded_chunks(chunks, record if args.skip_errors else None)):
            images = [image for _, image in loaded]
            predictions = predictor.predict(images, task=tasks, batch_size=args.batch_size) if images else []
            for (path, image), prediction in zip(loaded, predictions, strict=True):
                write_prediction(output, path.stem, image, prediction, vocab)
                record.mark_done(path.stem)  # after all of the image's files: a half-written image is redone
            bar.update(len(chunk))
    print(f"wrote {len(todo) - len(record.errors)} result(s) for {len(vocab)} classes to {output}")
    if record.errors:
        logger.warning("skipped %d image(s) that could not be read; see %s", len(record.errors), output / ERRORS_FILE)


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
                   help="redo every image and rewrite run.json (needed to change the model, vocabulary, tasks "
                        "or settings of a folder that holds results)")
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
