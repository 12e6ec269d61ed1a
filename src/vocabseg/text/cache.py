"""Text classifier: CLIP embeddings of a vocabulary, and their on-disk cache.

Encoding thousands of prompts (LVIS: 1825 synonyms x 14 templates) takes a
while on CPU, and the result depends only on the text encoder, the templates
and the names, so it is cached under a hash of exactly those inputs. Processes
that need the same missing entry take turns (a lock file beside it): the first
builds it, the others wait and load its result.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vocabseg.errors import ConfigError, VocabularyError
from vocabseg.fileio import atomic_write
from vocabseg.text.templates import DEFAULT_TEMPLATES, expand_prompts, synonym_counts
from vocabseg.text.vocabulary import Vocabulary

# list of N prompts -> [N, D] unnormalised text features.
EncodeFn = Callable[[list[str]], torch.Tensor]

_CACHE_FORMAT = 1  # bump when the stored layout or the math changes
_PROGRESS_MIN_BATCHES = 8  # show a progress bar from this many encoder calls
_LOCK_POLL_S = 0.1  # how often a waiting builder retries the lock

if sys.platform != "win32":
    import fcntl


class TextEmbeddings(NamedTuple):
    """Per-synonym text embeddings of a vocabulary."""

    embeddings: torch.Tensor  # [num_synonyms_total, D], unit L2 norm per row
    synonym_counts: list[int]  # rows per class, in class order; sums to num rows


def _encode_in_batches(
    prompts: list[str], encode_fn: EncodeFn, batch_size: int, progress: bool | None
) -> torch.Tensor:
    """Encodes prompts in chunks (bounded memory); returns [N, D] float32 in input order.

    Each distinct prompt is encoded once (a synonym shared by two classes gives the same
    prompts), and prompts are batched in the order of their token ids: prompts that share a
    prefix (a template's opening, then a name) share a batch, where a prefix-tree encoder
    (``vocabseg.clip.prefix_tree``) runs each shared prefix once. For ADE-150 this order cuts
    the tree's work by 4% and its time by ~10% against batching by length.
    """
    unique = list(dict.fromkeys(prompts))  # first-seen order
    token_ids = _token_ids(unique)
    order = sorted(range(len(unique)), key=lambda i: (token_ids[i], unique[i]))
    starts = range(0, len(unique), batch_size)
    show = len(starts) >= _PROGRESS_MIN_BATCHES if progress is None else progress
    chunks = []
    for start in tqdm(starts, desc="text embeddings", unit="batch", disable=not show):
        feats = encode_fn([unique[i] for i in order[start : start + batch_size]])  # [b, D]
        chunks.append(feats.detach().float())
    sorted_feats = torch.cat(chunks)  # [U, D] in encoding order
    row = {unique[i]: position for position, i in enumerate(order)}
    return sorted_feats[torch.tensor([row[p] for p in prompts], device=sorted_feats.device)]  # [N, D]


def _token_ids(prompts: list[str]) -> list[tuple[int, ...]]:
    """CLIP BPE token ids of each prompt up to its end-of-text (open_clip's tokenizer, which all
    its text towers but a few share; only the batching depends on it)."""
    import open_clip  # here, not at import: vocabseg.text stays light

    from vocabseg.clip.prefix_tree import token_sequences  # here: vocabseg.clip imports this module

    return token_sequences(open_clip.tokenize(prompts))


def build_text_classifier(
    vocab: Vocabulary,
    encode_fn: EncodeFn,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    *,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float32,
    progress: bool | None = None,
) -> TextEmbeddings:
    """Embeds every synonym of a vocabulary as the official FC-CLIP does.

    Each prompt embedding is L2-normalised, the embeddings of one synonym are
    averaged over the templates, and the mean is L2-normalised again. The math
    runs in float32 whatever ``encode_fn`` returns; ``dtype`` is the output's.

    Args:
        vocab: Classes to embed.
        encode_fn: Maps a list of N prompts to their [N, D] unnormalised CLIP
            text features (e.g. tokenizer + ``model.encode_text``).
        templates: Prompt templates, one ``{}`` slot each.
        batch_size: Prompts per ``encode_fn`` call (the official code uses 128; any size gives
            the same embeddings).
        dtype: dtype of the returned embeddings.
        progress: Show a tqdm bar; ``None`` shows it only for many batches.

    Returns:
        Embeddings [num_synonyms_total, D] on ``encode_fn``'s device, and the
        number of synonyms per class (the model takes a max over each group).
    """
    if len(vocab) == 0:
        raise VocabularyError(f"vocabulary {vocab.name!r} has no classes; nothing to embed")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    prompts, counts = expand_prompts(vocab, templates)
    with torch.no_grad():  # frozen text tower; no autograd graph to keep
        feats = _encode_in_batches(prompts, encode_fn, batch_size, progress)  # [S*T, D]
        feats = F.normalize(feats, dim=-1)
        feats = feats.view(sum(counts), len(templates), -1).mean(dim=1)  # [S, D]
        feats = F.normalize(feats, dim=-1)
    return TextEmbeddings(embeddings=feats.to(dtype), synonym_counts=counts)


def default_cache_dir() -> Path:
    """``$VOCABSEG_CACHE`` if set, else ``~/.cache/vocabseg/text``."""
    env = os.environ.get("VOCABSEG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vocabseg" / "text"


def cache_key(
    vocab: Vocabulary, encoder_id: str, templates: Sequence[str], dtype: torch.dtype
) -> str:
    """SHA-256 (hex) of everything a :class:`TextEmbeddings` depends on.

    The vocabulary's name, thing flags, ids and colours are left out on
    purpose: they do not change the embeddings.
    """
    payload = {
        "format": _CACHE_FORMAT,
        "encoder": encoder_id,
        "templates": list(templates),
        "classes": [list(c.names) for c in vocab.classes],  # grouping and order
        "dtype": str(dtype),
    }
    blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class TextEmbeddingCache:
    """Directory of cached text classifiers, one ``<key>.pt`` file each.

    Files are written atomically (``vocabseg.fileio.atomic_write``), so a crash
    never leaves a truncated entry, and read with ``weights_only=True``. An entry
    whose shape does not fit the vocabulary (or the encoder's width) is rebuilt.
    Builders of one entry take turns through ``flock`` on ``<key>.lock``, which
    the system releases if a builder dies, so a lock is never stale.

    Args:
        directory: Cache folder; default :func:`default_cache_dir`.
        lock_timeout: Seconds to wait for another process building the same
            entry before building it here too.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, lock_timeout: float = 900.0):
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()
        self.lock_timeout = lock_timeout

    def path(self, key: str) -> Path:
        return self.directory / f"text_{key}.pt"

    def load(self, key: str, *, counts: Sequence[int] | None = None, dim: int | None = None) -> TextEmbeddings | None:
        """Returns the cached classifier, or None (with a warning if a file is there but unusable).

        Args:
            key: From :func:`cache_key`.
            counts: Synonyms per class the entry must hold (rows = their sum).
            dim: Embedding width the entry must have (the encoder's).
        """
        entry, problem = self._read(key, counts, dim)
        if problem:
            warnings.warn(f"ignoring {problem}; rebuilding it", stacklevel=2)
        return entry

    def _read(
        self, key: str, counts: Sequence[int] | None, dim: int | None
    ) -> tuple[TextEmbeddings | None, str | None]:
        """(entry, None) if usable, (None, why) if present but unusable, (None, None) if absent."""
        path = self.path(key)
        if not path.is_file():
            return None, None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if data["key"] != key:
                raise ValueError("stored key differs from its file name")
            entry = TextEmbeddings(data["embeddings"], [int(n) for n in data["synonym_counts"]])
        except Exception as err:  # a bad entry must not stop inference: rebuild it
            return None, f"unreadable text-embedding cache file '{path}': {err}"
        problem = _shape_problem(entry, counts, dim)
        return (None, f"text-embedding cache file '{path}': {problem}") if problem else (entry, None)

    def save(self, key: str, classifier: TextEmbeddings) -> Path:
        """Writes one entry atomically and returns its path."""
        data = {
            "key": key,
            "embeddings": classifier.embeddings.detach().cpu(),
            "synonym_counts": list(classifier.synonym_counts),
        }
        # torch.save resolved at call time (tests replace it); the file gets the umask's
        # permissions, so other users can share the cache.
        return atomic_write(self.path(key), lambda p: torch.save(data, p))

    def get_or_build(
        self,
        vocab: Vocabulary,
        encode_fn: EncodeFn,
        encoder_id: str,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        *,
        batch_size: int = 256,
        dtype: torch.dtype = torch.float32,
        progress: bool | None = None,
        dim: int | None = None,
    ) -> TextEmbeddings:
        """Loads the classifier from the cache, building and storing it on a miss.

        Args:
            vocab: Classes to embed.
            encode_fn: See :func:`build_text_classifier`.
            encoder_id: Identity of the text encoder, e.g. the CLIP model name
                plus a checksum of its weights; part of the cache key.
            templates: Prompt templates.
            batch_size: Prompts per ``encode_fn`` call.
            dtype: dtype of the embeddings (part of the key).
            progress: See :func:`build_text_classifier`.
            dim: The encoder's embedding width, if known: an entry of another
                width is rebuilt (one with the wrong number of rows always is).

        Returns:
            The classifier, embeddings on the CPU (hit or miss alike).
        """
        key = cache_key(vocab, encoder_id, templates, dtype)
        counts = synonym_counts(vocab)
        cached = self.load(key, counts=counts, dim=dim)
        if cached is not None:
            return cached
        with self._build_lock(key):
            cached, _ = self._read(key, counts, dim)  # built by another process while this one waited
            if cached is not None:
                return cached
            built = build_text_classifier(
                vocab, encode_fn, templates, batch_size=batch_size, dtype=dtype, progress=progress
            )
            try:
                self.save(key, built)
            except OSError as err:  # unwritable or full cache: the embeddings are still good
                warnings.warn(f"could not write the text-embedding cache in '{self.directory}': {err}", stacklevel=2)
        return TextEmbeddings(built.embeddings.cpu(), built.synonym_counts)

    @contextmanager
    def _build_lock(self, key: str) -> Iterator[None]:
        """Holds ``<key>.lock`` while this process builds the entry; removes it afterwards.

        Without a lock (Windows, an unwritable folder, or after ``lock_timeout``) the entry
        is built anyway: at worst twice, as before the lock existed.
        """
        path = self.path(key).with_suffix(".lock")
        fd = None if sys.platform == "win32" else self._acquire(path)
        try:
            yield
        finally:
            if fd is not None:
                path.unlink(missing_ok=True)  # before unlocking: a waiter then sees a new file, see _acquire
                os.close(fd)

    def _acquire(self, path: Path) -> int | None:
        """An fd holding an exclusive ``flock`` on ``path``, or None if it cannot be had."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                return None  # unwritable cache: save() will say so
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # The holder unlinks the file before unlocking; a lock on an unlinked file is no lock.
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except OSError:  # held by another builder, or unlinked meanwhile
                pass
            os.close(fd)
            if time.monotonic() > deadline:
                warnings.warn(f"waited {self.lock_timeout:.0f} s for another process to build '{path.stem}'; "
                              "building it here too", stacklevel=4)
                return None
            time.sleep(_LOCK_POLL_S)


def _shape_problem(entry: TextEmbeddings, counts: Sequence[int] | None, dim: int | None) -> str | None:
    """Why an entry does not fit the vocabulary or the encoder, or None if it does."""
    shape = tuple(entry.embeddings.shape)
    if len(shape) != 2 or shape[0] != sum(entry.synonym_counts):
        return f"its embeddings {list(shape)} do not match its synonym counts (sum {sum(entry.synonym_counts)})"
    if counts is not None and list(counts) != entry.synonym_counts:
        return f"it holds {shape[0]} rows, the vocabulary has {sum(counts)} synonyms in {len(counts)} classes"
    if dim is not None and shape[1] != dim:
        return f"its embeddings are {shape[1]} wide, the text encoder's {dim}"
    return None
