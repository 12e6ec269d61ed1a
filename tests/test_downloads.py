"""Downloading official checkpoints into the cache (no network: file:// URLs and a failing opener)."""
from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request

import pytest

from vocabseg import zoo
from vocabseg.downloads import cache_dir, download, fetch_official_weights, sha256_of
from vocabseg.errors import CheckpointError


def test_download_verifies_checksum_and_leaves_no_partial_file(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"x" * 1000)
    target = download(source.as_uri(), tmp_path / "dl" / "w.pth", sha256_of(source), progress=False)
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        download(source.as_uri(), tmp_path / "dl" / "bad.pth", "0" * 64, progress=False)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["w.pth"]


def test_offline_download_names_the_file_and_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("VOCABSEG_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    variant = zoo.get_variant("fcclip_rn50_coco")
    with pytest.raises(CheckpointError) as error:
        fetch_official_weights(variant, progress=False)
    message = str(error.value)
    assert variant.weights.url in message and "--weights" in message and str(cache_dir()) in message
    assert "\n" not in message


def test_cached_checkpoint_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("VOCABSEG_HOME", str(tmp_path))
    variant = zoo.get_variant("fcclip_rn50_coco")
    cached = cache_dir() / variant.weights.filename
    assert cached.parent == tmp_path / "checkpoints"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    assert fetch_official_weights(variant, progress=False) == cached


def test_a_variant_without_official_weights_asks_for_a_file():
    variant = dataclasses.replace(zoo.get_variant("fcclip_rn50_coco"), weights=None)
    with pytest.raises(CheckpointError, match="no official weights; pass --weights PATH"):
        fetch_official_weights(variant, progress=False)


def test_a_web_page_is_never_saved_as_a_checkpoint(tmp_path):
    page = tmp_path / "quota.html"
    page.write_text("<html>Google Drive - quota exceeded</html>")
    with pytest.raises(CheckpointError, match="returned a web page"):
        download(page.as_uri(), tmp_path / "dl" / "w.pth", progress=False)
    assert not any((tmp_path / "dl").iterdir())
