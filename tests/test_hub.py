"""Sharing checkpoints: safetensors folders, hf-hub: names through a local hub cache (offline), torch.hub."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from vocabseg import hub
from vocabseg.checkpoints import push_checkpoint
from vocabseg.cli import main
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.models import FAMILIES
from vocabseg.predictor import Predictor
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo

REPO_ROOT = Path(__file__).resolve().parents[1]
VOCAB = "red disc; blue disc; background [stuff]"


def _predict(predictor: Predictor) -> tuple[np.ndarray, list]:
    predictor.set_vocabulary(VOCAB, progress=False)
    pred = predictor.predict(synthetic_photo(), task="panoptic")
    return pred.panoptic, [(s.class_name, s.score, s.area) for s in pred.segments]


def _raw(predictor: Predictor) -> torch.Tensor:
    predictor.set_vocabulary(VOCAB, progress=False)
    return predictor.run([synthetic_photo()])[0].mask_cls


def populate_hub_cache(cache: Path, repo_id: str, folder: Path, refs: tuple[str, ...] = ("main",)) -> str:
    """Lays ``folder`` out as huggingface_hub's cache holds a downloaded repo; returns the commit hash."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return commit


@pytest.fixture(scope="module", autouse=True)
def text_cache(tmp_path_factory):
    """One text-embedding cache for the module: the vocabulary is embedded once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOCABSEG_CACHE", str(tmp_path_factory.mktemp("text")))
        yield


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", seed=3)


@pytest.fixture(scope="module")
def pushed(tiny_checkpoint, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pushed") / "repo"
    assert main(["-q", "push", str(tiny_checkpoint), "--local-dir", str(folder)]) == 0
    return folder


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_push_writes_the_hub_layout(pushed):
    assert sorted(p.name for p in pushed.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    header = json.loads((pushed / "config.json").read_text())
    assert header["format"] == "vocabseg" and header["family"] == "fcclip" and "model" not in header
    assert header["settings"]["inference"]["min_size"] == 64


def test_folder_and_safetensors_file_load_to_identical_outputs(tiny_checkpoint, pushed):
    original = Predictor.from_pretrained(str(tiny_checkpoint))
    expected = _raw(original)
    for source in (pushed, pushed / "model.safetensors"):
        torch.testing.assert_close(_raw(Predictor.from_pretrained(str(source))), expected, rtol=0, atol=0)


def test_hf_hub_name_loads_offline_from_the_cache_with_identical_outputs(tiny_checkpoint, pushed, offline_cache):
    populate_hub_cache(offline_cache, "someone/tiny-fcclip", pushed, refs=("main", "v1"))
    expected_map, expected_segments = _predict(Predictor.from_pretrained(str(tiny_checkpoint)))
    for name in ("hf-hub:someone/tiny-fcclip", "hf-hub:someone/tiny-fcclip@v1"):
        panoptic, segments = _predict(Predictor.from_pretrained(name))
        np.testing.assert_array_equal(panoptic, expected_map)
        assert segments == expected_segments


def test_offline_miss_is_one_line_naming_the_file(offline_cache):
    with pytest.raises(CheckpointError) as error:
        Predictor.from_pretrained("hf-hub:someone/absent@v2")
    message = str(error.value)
    assert "\n" not in message
    assert "someone/absent/config.json at revision v2" in message and "offline" in message


def test_download_command_prints_the_cached_folder(pushed, offline_cache, capsys):
    commit = populate_hub_cache(offline_cache, "someone/tiny-fcclip", pushed)
    assert main(["download", "hf-hub:someone/tiny-fcclip"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"snapshots/{commit}")
    assert main(["download", "hf-hub:someone/missing"]) == 2
    assert "someone/missing/config.json" in capsys.readouterr().err


def test_bad_names_and_folders_are_one_line_errors(tmp_path, pushed):
    with pytest.raises(ConfigError, match="org/name"):
        hub.parse_hub_name("hf-hub:no-slash")
    folder = tmp_path / "copy"
    shutil.copytree(pushed, folder)
    with pytest.raises(CheckpointError, match="mistyped.safetensors does not exist"):  # not "no config.json"
        Predictor.from_pretrained("fcclip_rn50_coco", weights=str(folder / "mistyped.safetensors"))
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json beside"):
        Predictor.from_pretrained(str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Predictor.from_pretrained(str(folder))
    shutil.copy(pushed / "config.json", folder / "config.json")
    (folder / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="cannot be read"):
        Predictor.from_pretrained(str(folder))


def test_push_needs_exactly_one_target(tiny_checkpoint):
    with pytest.raises(ConfigError, match="exactly one"):
        push_checkpoint(str(tiny_checkpoint))


def test_push_to_a_repo_uploads_a_card_naming_it(tiny_checkpoint, monkeypatch):
    uploaded = {}

    def fake_push(folder, repo_id, **kwargs):  # no network: keep what would be uploaded
        uploaded.update({p.name: p.read_bytes() for p in folder.iterdir()})
        return f"https://huggingface.co/{repo_id}"

    monkeypatch.setattr(hub, "push", fake_push)
    assert push_checkpoint(str(tiny_checkpoint), repo_id="me/tiny") == "https://huggingface.co/me/tiny"
    assert sorted(uploaded) == ["README.md", "config.json", "model.safetensors"]
    assert 'from_pretrained("hf-hub:me/tiny")' in uploaded["README.md"].decode()


def test_torch_hub_load_on_the_repository(tiny_checkpoint):
    predictor = torch.hub.load(str(REPO_ROOT), "from_pretrained", source="local",
                               name_or_path=str(tiny_checkpoint))
    assert isinstance(predictor, Predictor)
    torch.testing.assert_close(_raw(predictor), _raw(Predictor.from_pretrained(str(tiny_checkpoint))), rtol=0, atol=0)
    # A zoo entry point passes its arguments through: a local copy of the weights, no download.
    by_name = torch.hub.load(str(REPO_ROOT), "fcclip_rn50_coco", source="local", weights=str(tiny_checkpoint))
    assert by_name.family.name == "fcclip"


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"fcclip"}))  # FC-CLIP: the tests above
def test_every_family_round_trips_through_a_shared_folder(family, tmp_path):
    from vocabseg.checkpoints import parse_checkpoint, read_checkpoint

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth", family=family)
    original = parse_checkpoint(read_checkpoint(checkpoint), source="original")
    folder = push_checkpoint(str(checkpoint), local_dir=str(tmp_path / "shared"))
    shared = parse_checkpoint(hub.read_pretrained(folder), source="shared")
    assert shared.family.name == family and shared.config == original.config
    assert shared.settings == original.settings and shared.train_vocabulary == original.train_vocabulary
    assert shared.state_dict.keys() == original.state_dict.keys()
    for key, value in original.state_dict.items():
        assert torch.equal(shared.state_dict[key], value), key


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_shared_files_honour_the_umask(tiny_checkpoint, tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert main(["-q", "push", str(tiny_checkpoint), "--local-dir", str(tmp_path / "shared")]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "shared").iterdir()}
    assert modes == dict.fromkeys(["README.md", "config.json", "model.safetensors"], 0o666 & ~umask), modes
