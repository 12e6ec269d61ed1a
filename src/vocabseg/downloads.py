"""Downloading official checkpoints into the cache: progress bar, checksum, one-line offline message."""
from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from tqdm import tqdm

from vocabseg.errors import CheckpointError
from vocabseg.models import ModelVariant


def cache_dir() -> Path:
    """Where downloaded checkpoints live: $VOCABSEG_HOME/checkpoints or ~/.cache/vocabseg/checkpoints."""
    root = os.environ.get("VOCABSEG_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "vocabseg")
    return Path(root) / "checkpoints"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str | None = None, *, progress: bool = True) -> Path:
    """Downloads ``url`` to ``target`` atomically (a partial file is never left under the final name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        _fetch(url, partial, target, progress)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if sha256 and sha256_of(partial) != sha256:
        partial.unlink()
        raise CheckpointError(f"{url}: checksum mismatch (expected sha256 {sha256}); download it again")
    os.replace(partial, target)
    return target


def _fetch(url: str, partial: Path, target: Path, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
        if response.headers.get_content_type() == "text/html":
            # A sign-in or quota page instead of the file: never store it as a checkpoint.
            raise CheckpointError(f"{url} returned a web page, not the checkpoint (quota or sign-in); "
                                  f"download it in a browser and pass --weights PATH or save it as {target}")
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))


def fetch_official_weights(variant: ModelVariant, *, progress: bool = True) -> Path:
    """Path of the variant's official checkpoint, downloading it into the cache if needed."""
    spec = variant.weights
    if spec is None:
        raise CheckpointError(f"model {variant.name} has no official weights; pass --weights PATH")
    target = cache_dir() / spec.filename
    if target.exists():
        return target
    if spec.manual:
        raise CheckpointError(f"the {variant.name} checkpoint cannot be downloaded automatically ({spec.manual}): "
                              f"get it from {spec.url}, then pass --weights PATH or save it as {target}")
    try:
        return download(spec.url, target, spec.sha256, progress=progress)
    except (OSError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(
            f"could not download the {variant.name} checkpoint ({type(error).__name__}: {error}); "
            f"download {spec.url} yourself and pass --weights PATH, or save it as {target}"
        ) from None
