"""Download, cache and checkpoint-reading behaviour (no network: file:// URLs and a failing opener)."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import torch

from vocabseg import zoo
from vocabseg.errors import CheckpointError
from vocabseg.weights import cache_dir, download, fetch_official_weights, read_checkpoint, sha256_of


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
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    assert fetch_official_weights(variant, progress=False) == cached


def test_read_checkpoint_rejects_non_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "list.pth").write_bytes(b"")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a dict"):
        read_checkpoint(tmp_path / "list.pth")


def test_pkl_checkpoint_refuses_code_objects(tmp_path):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(tmp_path / "evil.pkl")


def test_every_variant_has_official_weights_and_consistent_config():
    assert zoo.list_models() == sorted(zoo.MODELS)
    for name in zoo.list_models():
        variant = zoo.get_variant(name)
        assert variant.weights.url.startswith("https://")
        assert variant.config.num_queries == 250
        assert variant.inference.ensemble_on_valid_mask == name.startswith("fcclip_rn")
    with pytest.raises(ValueError, match="choose one of"):
        zoo.get_variant("nope")


def test_a_web_page_is_never_saved_as_a_checkpoint(tmp_path):
    page = tmp_path / "quota.html"
    page.write_text("<html>Google Drive - quota exceeded</html>")
    with pytest.raises(CheckpointError, match="returned a web page"):
        download(page.as_uri(), tmp_path / "dl" / "w.pth", progress=False)
    assert not any((tmp_path / "dl").iterdir())


def test_official_urls_skip_the_google_drive_warning_page():
    for name in zoo.list_models():
        assert "confirm=t" in zoo.get_variant(name).weights.url
