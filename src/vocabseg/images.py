"""Reading user images into HxWx3 uint8 RGB arrays."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vocabseg.errors import ImageError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def load_image(image) -> np.ndarray:
    """Accepts a path, a PIL image or an HxWx3 / HxW uint8 array; returns HxWx3 uint8 RGB.

    EXIF orientation is applied (paths and PIL images alike), as detectron2's reader does
    for the official models; 16-bit images are scaled to 8 bits rather than clipped.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            with warnings.catch_warnings():  # size is the predictor's call (max_pixels), not PIL's
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as pil:
                    return pil_to_rgb(pil)
        except FileNotFoundError:
            raise ImageError(f"image {path} does not exist") from None
        except Image.DecompressionBombError:
            raise _too_large(path) from None
        except (UnidentifiedImageError, OSError) as error:
            raise ImageError(f"image {path} cannot be read ({error.__class__.__name__}): "
                             "is it a valid image file?") from None
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageError(f"unsupported image input of type {type(image).__name__}: "
                     "pass a path, a PIL image or a uint8 array")


def pil_to_rgb(pil: Image.Image) -> np.ndarray:
    """HxWx3 uint8 RGB of a PIL image: EXIF rotation applied, 16-bit grey scaled to 8 bits."""
    pil = ImageOps.exif_transpose(pil)
    if pil.mode.startswith("I;16") or pil.mode == "I":  # 16-bit grey: keep the top 8 bits
        grey = np.asarray(pil).astype(np.int64)
        shift = 8 if grey.max() < 65536 else 24
        return _array_to_rgb((grey >> shift).clip(0, 255).astype(np.uint8))
    return np.asarray(pil.convert("RGB")).copy()


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageError(f"image array has dtype {array.dtype}; pass uint8 RGB values in 0-255")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(array[:, :, :3])
    raise ImageError(f"image array has shape {array.shape}; expected HxWx3 (RGB) or HxW")


def check_readable(paths: list[Path]) -> None:
    """Fails early (before loading a model) on a file that is not an image; reads headers only."""
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path):
                    pass
        except Image.DecompressionBombError:
            raise _too_large(path) from None
        except (UnidentifiedImageError, OSError) as error:
            raise ImageError(f"image {path} cannot be read ({error.__class__.__name__}): "
                             "is it a valid image file?") from None


def _too_large(path: Path) -> ImageError:
    return ImageError(f"image {path} is larger than PIL's decompression-bomb limit "
                      f"({2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} MP): resize it before segmenting")


def expand_inputs(inputs: list[str], *, recursive: bool = False, exclude: Path | None = None) -> dict[Path, str]:
    """Images given as files or folders -> the name of each one's outputs (insertion order: the inputs').

    A folder gives its image files, sorted, each named by its stem; with ``recursive``, those of
    its subfolders too (hidden ones aside), each named by its path relative to the folder without
    the suffix (``day1/a``), so two ``a.jpg`` in different subfolders write different files.
    ``exclude`` (the output folder) is never read as input. Without ``recursive``, images in
    subfolders are skipped, and the message says so.
    """
    names: dict[Path, str] = {}
    skipped: list[Path] = []  # folders whose subfolders hold images that were not read
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = _folder_images(path, recursive=recursive, exclude=exclude)
            names.update(found)
            if not recursive and _has_nested_images(path):
                skipped.append(path)
        elif path.exists():
            names[path] = path.stem
        else:
            raise ImageError(f"input {path} does not exist")
    if not names:
        nested = f"; images in subfolders of {', '.join(map(str, skipped))} are skipped: add --recursive" if skipped \
            else ""
        raise ImageError(f"no images found in {', '.join(inputs)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
                         + nested)
    for folder in skipped:
        logger.info("%s: images in its subfolders are skipped (--recursive includes them)", folder)
    _check_unique(names)
    return names


def _folder_images(folder: Path, *, recursive: bool, exclude: Path | None) -> dict[Path, str]:
    """The folder's images (and its subfolders', with ``recursive``), sorted, named by relative path."""
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    skip = exclude.resolve() if exclude is not None else None
    found = {}
    for path in sorted(pattern):
        relative = path.relative_to(folder)  # lexical: a name never leaves the output folder
        if path.suffix.lower() not in IMAGE_SUFFIXES or any(part.startswith(".") for part in relative.parts):
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_file():
            found[path] = relative.with_suffix("").as_posix()
    return found


def _has_nested_images(folder: Path) -> bool:
    """Whether any subfolder (at any depth) holds an image file; stops at the first."""
    return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for sub in folder.iterdir() if sub.is_dir()
               for p in sub.rglob("*"))


def _check_unique(names: dict[Path, str]) -> None:
    """Outputs are named after the input: two inputs must not share a name."""
    seen: dict[str, Path] = {}
    for path, name in names.items():
        if name in seen:
            raise ImageError(f"inputs {seen[name]} and {path} would write the same output files ({name}_*); "
                             "rename one or run them separately")
        seen[name] = path
