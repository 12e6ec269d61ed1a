"""Text-classifier math and the on-disk embedding cache."""
import hashlib
import math
import threading
import time

import pytest
import torch

from vocabseg.text import (
    TextEmbeddingCache,
    VocabClass,
    Vocabulary,
    build_text_classifier,
    cache_key,
    default_cache_dir,
    expand_prompts,
)
from vocabseg.text import cache as cache_module

TOY = Vocabulary("toy", (VocabClass(("x",)), VocabClass(("y", "z"), is_thing=False)))
TEMPLATES = ("a {}", "b {}")


class FakeEncoder:
    """Deterministic [N, D] features per prompt; counts calls and prompts."""

    def __init__(self, dim: int = 8, table: dict[str, list[float]] | None = None):
        self.dim, self.table = dim, table or {}
        self.calls, self.prompts = 0, 0

    def _feature(self, prompt: str) -> torch.Tensor:
        if prompt in self.table:
            return torch.tensor(self.table[prompt])
        seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "little")
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)) * 3

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        self.calls, self.prompts = self.calls + 1, self.prompts + len(prompts)
        return torch.stack([self._feature(p) for p in prompts])


def failing_encoder(prompts: list[str]) -> torch.Tensor:
    raise RuntimeError("encoder exploded")


def test_classifier_matches_hand_computation():
    table = {
        "a x": [3.0, 4.0], "b x": [0.0, 2.0],  # unit: [.6, .8], [0, 1] -> mean [.3, .9]
        "a y": [1.0, 0.0], "b y": [5.0, 0.0],  # both [1, 0]
        "a z": [0.0, -1.0], "b z": [-2.0, 0.0],  # mean [-.5, -.5]
    }
    clf = build_text_classifier(TOY, FakeEncoder(table=table), TEMPLATES)
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[0.3, 0.9], [1.0, 0.0], [-s, -s]])
    expected[0] /= math.sqrt(0.9)
    assert clf.synonym_counts == [1, 2]
    torch.testing.assert_close(clf.embeddings, expected)


def test_classifier_matches_official_reshape_formula():
    encoder = FakeEncoder(dim=16)
    prompts, counts = expand_prompts(TOY)
    feats = encoder(prompts)  # [S*T, D]
    feats = feats / feats.norm(dim=-1, keepdim=True)
    feats = feats.reshape(feats.shape[0] // 14, 14, feats.shape[-1]).mean(1)
    feats = feats / feats.norm(dim=-1, keepdim=True)
    clf = build_text_classifier(TOY, encoder)
    torch.testing.assert_close(clf.embeddings, feats)
    assert clf.embeddings.dtype == torch.float32


def test_batching_does_not_change_result():
    big, small = FakeEncoder(), FakeEncoder()
    a = build_text_classifier(TOY, big, TEMPLATES, batch_size=128)
    b = build_text_classifier(TOY, small, TEMPLATES, batch_size=1, progress=True)
    assert (big.calls, small.calls) == (1, 6)
    torch.testing.assert_close(a.embeddings, b.embeddings)


def test_output_dtype_and_empty_vocabulary():
    clf = build_text_classifier(TOY, FakeEncoder(), TEMPLATES, dtype=torch.float16)
    assert clf.embeddings.dtype == torch.float16
    with pytest.raises(ValueError, match="no classes"):
        build_text_classifier(Vocabulary("empty"), FakeEncoder(), TEMPLATES)


def test_tiny_open_clip_text_tower():
    open_clip = pytest.importorskip("open_clip")
    from open_clip.transformer import TextTransformer

    torch.manual_seed(0)
    tower = TextTransformer(context_length=77, vocab_size=49408, width=32, heads=2, layers=1,
                            output_dim=16).eval()
    tokenizer = open_clip.get_tokenizer("RN50")  # bundled BPE vocabulary, no download
    clf = build_text_classifier(TOY, lambda p: tower(tokenizer(p)))
    assert clf.embeddings.shape == (3, 16)
    torch.testing.assert_close(clf.embeddings.norm(dim=-1), torch.ones(3))


def test_cache_hit_skips_encoder(tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    first = cache.get_or_build(TOY, FakeEncoder(), "fake-v1", TEMPLATES)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    again = TextEmbeddingCache(tmp_path).get_or_build(TOY, failing_encoder, "fake-v1", TEMPLATES)
    assert torch.equal(first.embeddings, again.embeddings)
    assert again.synonym_counts == first.synonym_counts == [1, 2]


def test_cache_key_tracks_every_input():
    base = cache_key(TOY, "enc", TEMPLATES, torch.float32)
    renamed_synonym = Vocabulary("toy", (VocabClass(("x",)), VocabClass(("y", "w"))))
    regrouped = Vocabulary("toy", (VocabClass(("x", "y")), VocabClass(("z",))))
    changed = [
        cache_key(TOY, "enc", ("a {}", "c {}"), torch.float32),
        cache_key(TOY, "enc", TEMPLATES[::-1], torch.float32),
        cache_key(renamed_synonym, "enc", TEMPLATES, torch.float32),
        cache_key(regrouped, "enc", TEMPLATES, torch.float32),
        cache_key(TOY, "enc2", TEMPLATES, torch.float32),
        cache_key(TOY, "enc", TEMPLATES, torch.float16),
    ]
    assert len(set(changed + [base])) == len(changed) + 1
    # Metadata that does not affect embeddings keeps the key.
    relabelled = Vocabulary("other", (VocabClass(("x",), False, 7, (1, 2, 3)), TOY.classes[1]))
    assert cache_key(relabelled, "enc", TEMPLATES, torch.float32) == base


def test_failed_encode_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="exploded"):
        TextEmbeddingCache(tmp_path).get_or_build(TOY, failing_encoder, "enc", TEMPLATES)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def half_save(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.torch, "save", half_save)
    with pytest.warns(UserWarning, match="disk full"):  # the embeddings are still returned
        clf = TextEmbeddingCache(tmp_path).get_or_build(TOY, FakeEncoder(), "enc", TEMPLATES)
    assert clf.embeddings.shape == (3, 8)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_entry_is_rebuilt_with_warning(tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    key = cache_key(TOY, "enc", TEMPLATES, torch.float32)
    cache.path(key).write_bytes(b"not a torch file")
    encoder = FakeEncoder()
    with pytest.warns(UserWarning, match="unreadable"):
        clf = cache.get_or_build(TOY, encoder, "enc", TEMPLATES)
    assert encoder.calls == 1 and clf.embeddings.shape == (3, 8)
    assert cache.load(key) is not None


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert TextEmbeddingCache().directory == tmp_path
    monkeypatch.delenv("VOCABSEG_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "vocabseg", "text")


def test_an_unwritable_cache_warns_and_still_returns_the_embeddings(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    cache = TextEmbeddingCache(blocker / "text")
    from vocabseg.text import parse_vocabulary

    vocab = parse_vocabulary("cat; dog")
    encode = lambda prompts: torch.randn(len(prompts), 8)
    with pytest.warns(UserWarning, match="could not write the text-embedding cache"):
        classifier = cache.get_or_build(vocab, encode, "fake", progress=False)
    assert classifier.embeddings.shape == (2, 8)


@pytest.mark.parametrize(("rows", "width", "dim", "why"), [
    (2, 8, None, "2 rows, the vocabulary has 3 synonyms in 2 classes"),  # too few rows: an IndexError later
    (3, 4, 8, "4 wide, the text encoder's 8"),
])
def test_an_entry_of_the_wrong_shape_is_rebuilt_with_a_warning(tmp_path, rows, width, dim, why):
    cache = TextEmbeddingCache(tmp_path)
    key = cache_key(TOY, "enc", TEMPLATES, torch.float32)
    counts = [1, 1] if rows == 2 else [1, 2]
    cache.save(key, cache_module.TextEmbeddings(torch.ones(rows, width), counts))
    encoder = FakeEncoder()
    with pytest.warns(UserWarning, match=f"{why}; rebuilding it"):
        clf = cache.get_or_build(TOY, encoder, "enc", TEMPLATES, dim=dim)
    assert encoder.calls == 1 and clf.embeddings.shape == (3, 8)
    assert cache.load(key, counts=[1, 2], dim=8) is not None


class SlowEncoder(FakeEncoder):
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        time.sleep(0.5)  # long enough for the other thread to find the entry missing
        return super().__call__(prompts)


def test_concurrent_builders_of_one_entry_build_it_once(tmp_path):
    encoder, start = SlowEncoder(), threading.Barrier(2)
    results: list = [None, None]

    def build(slot: int) -> None:
        start.wait()
        results[slot] = TextEmbeddingCache(tmp_path).get_or_build(TOY, encoder, "enc", TEMPLATES)

    threads = [threading.Thread(target=build, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert encoder.calls == 1  # one build; the other builder waited and loaded it
    torch.testing.assert_close(results[0].embeddings, results[1].embeddings)
    assert [p.name for p in tmp_path.iterdir()] == [f"text_{cache_key(TOY, 'enc', TEMPLATES, torch.float32)}.pt"]
