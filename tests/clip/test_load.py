"""Tests for vocabseg.clip.load: building open_clip models and loading frozen CLIP weights."""
from __future__ import annotations

import logging
import time
import warnings

import open_clip
import pytest
import torch

from vocabseg.clip import load as load_module
from vocabseg.clip.load import build_clip, create_clip, load_clip_state, load_clip_weights
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.testing import tiny_config


def _tiny_clip(seed: int):
    torch.manual_seed(seed)
    config = tiny_config("resnet")
    return build_clip(config.clip_model_name, clip_config=config.clip_config)


def test_unknown_open_clip_name_says_where_to_look():
    with pytest.raises(ConfigError, match="unknown open_clip model 'no-such-clip'.*list_models"):
        create_clip("no-such-clip")


def test_weights_from_a_file_load_and_name_their_origin(tmp_path):
    source, target = _tiny_clip(0), _tiny_clip(1)
    # as saved by DataParallel training: the "module." prefix is dropped
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "clip.pt")
    origin = load_clip_weights(target, "tiny_resnet", "none", str(tmp_path / "clip.pt"))
    assert origin == str(tmp_path / "clip.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_weights_of_another_clip_are_a_one_line_error(tmp_path):
    torch.save({"visual.proj": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as info:
        load_clip_weights(_tiny_clip(0), "tiny_resnet", "none", str(tmp_path / "other.pt"))
    message = str(info.value)
    assert "not an open_clip state dict of tiny_resnet" in message and "\n" not in message


def test_unknown_pretrained_tag_asks_for_a_file():
    with pytest.raises(CheckpointError, match="no pretrained tag 'none'.*--clip-weights"):
        load_clip_weights(_tiny_clip(0), "RN50", "none", None)


def noisy_slow_download(cfg, *args, **kwargs):
    """What huggingface_hub does offline: retries with a warning each, then fails."""
    for _ in range(3):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5]")
        warnings.warn("resume_download is deprecated", FutureWarning, stacklevel=1)
        time.sleep(0.3)
    raise OSError("We couldn't connect to 'https://huggingface.co'")


@pytest.fixture
def no_cached_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip
    monkeypatch.setattr(load_module, "try_to_load_from_cache", lambda repo_id, filename: None)
    monkeypatch.setattr(open_clip, "download_pretrained", noisy_slow_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(load_module.hf_constants, "HF_HUB_OFFLINE", False)


def _refused_quietly(caplog) -> str:
    caplog.set_level(logging.DEBUG)
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught, pytest.raises(CheckpointError) as info:
        warnings.simplefilter("always")
        load_clip_state("RN50", "openai", None)
    assert time.monotonic() - start < 0.25
    assert caught == [] and caplog.records == []
    message = str(info.value)
    assert "\n" not in message and "timm/resnet50_clip.openai/" in message and "--clip-weights PATH" in message
    return message


def _no_network(*args, **kwargs):
    raise OSError("Network is unreachable")


def test_offline_fails_fast_and_quietly(monkeypatch, no_cached_weights, caplog):
    monkeypatch.setattr(load_module.socket, "create_connection", _no_network)
    assert "huggingface.co cannot be reached" in _refused_quietly(caplog)


def test_hf_hub_offline_is_honoured_without_touching_the_network(monkeypatch, no_cached_weights, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(load_module.socket, "create_connection", lambda *a, **k: pytest.fail("network used"))
    assert "HF_HUB_OFFLINE is set" in _refused_quietly(caplog)


def test_a_failing_download_hides_third_party_warnings(monkeypatch, no_cached_weights, caplog):
    class Connection:
        def close(self) -> None:
            pass

    monkeypatch.setattr(load_module.socket, "create_connection", lambda *a, **k: Connection())
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(CheckpointError, match=r"\(OSError\)"):
        warnings.simplefilter("always")
        load_clip_state("RN50", "openai", None)
    assert caught == [] and caplog.records == []


def test_weights_already_downloaded_load_offline(monkeypatch, no_cached_weights, tmp_path):
    torch.save({"weight": torch.ones(2)}, tmp_path / "weights.bin")
    cached = {("timm/resnet50_clip.openai", "open_clip_pytorch_model.bin"): str(tmp_path / "weights.bin")}
    monkeypatch.setattr(load_module, "try_to_load_from_cache", lambda repo_id, name: cached.get((repo_id, name)))
    monkeypatch.setattr(load_module.socket, "create_connection", _no_network)
    state, origin = load_clip_state("RN50", "openai", None)
    assert torch.equal(state["weight"], torch.ones(2)) and origin == "open_clip:RN50/openai"
