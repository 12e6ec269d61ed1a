"""Reading, recognising and writing checkpoints: format v2, the v1 files still around, official files."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from vocabseg import checkpoints
from vocabseg.checkpoints import FORMAT, FORMAT_V1, load_model, parse_checkpoint, read_checkpoint, save_checkpoint
from vocabseg.cli import main
from vocabseg.errors import CheckpointError
from vocabseg.models import ModelVariant, Settings, get_family
from vocabseg.models.fcclip.config import FCCLIPSettings
from vocabseg.models.fcclip.convert import vocabseg_to_official
from vocabseg.predictor import Predictor
from vocabseg.testing import synthetic_photo, tiny_config, tiny_model
from vocabseg.text import TextEmbeddingCache

FAMILY = get_family("fcclip")
VOCAB = "cat; dog; road [stuff]"
SETTINGS = {"min_size": 64, "max_size": 96, "ensemble_alpha": 0.3, "ensemble_on_valid_mask": True,
            "overlap_threshold": 0.7}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models run faster on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def model():
    return tiny_model("convnext", seed=3).eval()


def _settings(**overrides) -> Settings:
    return FAMILY.default_settings(tiny_config()).override({**SETTINGS, **overrides})


def _raw(predictor: Predictor, tmp_path):
    predictor.text_cache = TextEmbeddingCache(tmp_path / "text")
    predictor.set_vocabulary(VOCAB, progress=False)
    return predictor.run([synthetic_photo(50, 90)])[0]


def _assert_same_outputs(a: Predictor, b: Predictor, tmp_path) -> None:
    raw_a, raw_b = _raw(a, tmp_path), _raw(b, tmp_path)
    assert raw_a.input_size == raw_b.input_size
    for name in ("mask_cls", "pred_masks"):
        torch.testing.assert_close(getattr(raw_a, name), getattr(raw_b, name), rtol=0, atol=0)
    assert raw_a.details.keys() == raw_b.details.keys() == {"in_vocab_logits", "out_vocab_logits"}
    for name in raw_a.details:
        torch.testing.assert_close(raw_a.details[name], raw_b.details[name], rtol=0, atol=0)


def test_read_checkpoint_rejects_non_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
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


def test_v2_round_trip_carries_family_config_and_settings(model, tmp_path):
    settings = _settings()
    path = save_checkpoint(tmp_path / "v2.pth", model, family=FAMILY, config=tiny_config(), settings=settings,
                           train_vocabulary="ade20k_150", extra={"iteration": 7})
    data = read_checkpoint(path)
    assert (data["format"], data["version"], data["family"], data["iteration"]) == (FORMAT, 2, "fcclip", 7)
    assert data["settings"] == settings.to_dict()
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))  # written atomically
    loaded = load_model(str(path))
    assert loaded.family is FAMILY and loaded.config == tiny_config() and loaded.source == str(path)
    assert loaded.settings == settings
    assert isinstance(loaded.settings.family, FCCLIPSettings) and loaded.settings.family.ensemble_alpha == 0.3
    assert loaded.train_vocabulary == "ade20k_150"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_v1_checkpoint_loads_with_the_outputs_of_its_v2_save(model, tmp_path):
    # format v1 as vocabseg wrote it before model families: one "inference" dict holding the
    # generic test settings and FC-CLIP's ensemble settings together
    v1_inference = {"ensemble_alpha": 0.3, "ensemble_beta": 0.8, "ensemble_on_valid_mask": True,
                    "object_mask_threshold": 0.0, "overlap_threshold": 0.7, "instances_per_image": 100,
                    "min_size": 64, "max_size": 96}
    torch.save({"format": FORMAT_V1, "version": 1, "config": tiny_config().to_dict(), "inference": v1_inference,
                "train_vocabulary": "coco_panoptic", "model": model.state_dict()}, tmp_path / "v1.pth")
    save_checkpoint(tmp_path / "v2.pth", model, family=FAMILY, config=tiny_config(), settings=_settings())
    v1 = Predictor.from_pretrained(str(tmp_path / "v1.pth"), progress=False)
    v2 = Predictor.from_pretrained(str(tmp_path / "v2.pth"), progress=False)
    assert v1.family is v2.family is FAMILY
    assert v1.config == v2.config and v1.settings == v2.settings == _settings()
    assert v1.train_vocabulary.name == v2.train_vocabulary.name == "coco_panoptic"
    _assert_same_outputs(v1, v2, tmp_path)


def test_v1_checkpoint_with_an_unknown_setting_is_a_checkpoint_error(model, tmp_path):
    data = {"format": FORMAT_V1, "version": 1, "config": tiny_config().to_dict(), "inference": {"no_such": 1},
            "model": {}}
    with pytest.raises(CheckpointError, match="v1.pth: unreadable vocabseg v1 checkpoint header"):
        parse_checkpoint(data, source="v1.pth")


@pytest.mark.parametrize("damage", ["no_family", "unknown_family", "unknown_setting"])
def test_unreadable_v2_header_is_a_checkpoint_error(damage):
    data = {"format": FORMAT, "version": 2, "family": "fcclip", "config": tiny_config().to_dict(),
            "settings": _settings().to_dict(), "model": {}}
    if damage == "no_family":
        del data["family"]
    elif damage == "unknown_family":
        data["family"] = "segformer"
    else:
        data["settings"]["family"]["ensemble_gamma"] = 1.0
    with pytest.raises(CheckpointError) as info:
        parse_checkpoint(data, source="ckpt.pth")
    message = str(info.value)
    assert message.startswith("ckpt.pth: unreadable vocabseg checkpoint header") and "\n" not in message
    culprit = {"no_family": "'family'", "unknown_family": "'segformer'", "unknown_setting": "ensemble_gamma"}[damage]
    assert culprit in message


def test_a_file_of_no_known_format_names_the_families(tmp_path):
    with pytest.raises(CheckpointError, match="neither a vocabseg checkpoint nor an official checkpoint of FC-CLIP"):
        parse_checkpoint({"model": {"encoder.weight": torch.zeros(1)}}, source="x.pth")
    with pytest.raises(CheckpointError, match="'nowhere.pth' is neither a model name"):
        load_model("nowhere.pth")


def test_without_frozen_weights_the_clip_comes_from_its_own_file(model, tmp_path, caplog):
    save_checkpoint(tmp_path / "slim.pth", model, family=FAMILY, config=tiny_config(), settings=_settings(),
                    include_frozen=False)
    slim = read_checkpoint(tmp_path / "slim.pth")["model"]
    assert slim and not any(k.startswith("backbone.clip.") for k in slim)
    torch.save(model.backbone.clip.state_dict(), tmp_path / "clip.pt")
    with caplog.at_level(logging.INFO, logger="vocabseg"):
        loaded = load_model(str(tmp_path / "slim.pth"), clip_weights=str(tmp_path / "clip.pt"))
    assert any(r.name.startswith("vocabseg") and "CLIP weights not in" in r.getMessage() for r in caplog.records)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    # no file and no open_clip tag to download: the error says which flag to use
    with pytest.raises(CheckpointError, match="--clip-weights"):
        load_model(str(tmp_path / "slim.pth"))


@pytest.fixture(scope="module")
def official_tiny(model, tmp_path_factory):
    """The tiny model as an official (detectron2-named) checkpoint."""
    path = tmp_path_factory.mktemp("official") / "tiny_official.pth"
    torch.save({"model": vocabseg_to_official(model.state_dict())}, path)
    return path


def test_official_checkpoint_of_a_variant_loads_its_weights(model, official_tiny):
    variant = ModelVariant(name="tiny", family="fcclip", config=tiny_config(), settings=_settings(), weights=None)
    ckpt = parse_checkpoint(read_checkpoint(official_tiny), source=str(official_tiny), variant=variant)
    assert ckpt.family is FAMILY and ckpt.config == tiny_config() and ckpt.settings == _settings()
    assert ckpt.has_frozen_parts
    assert ckpt.state_dict.keys() == model.state_dict().keys()


def test_official_checkpoint_of_unknown_shapes_asks_for_the_model(official_tiny):
    with pytest.raises(CheckpointError, match="cannot tell which FC-CLIP variant this is; pass --model"):
        load_model(str(official_tiny))


def test_official_checkpoint_with_the_wrong_model_family_is_refused(official_tiny, tmp_path, monkeypatch, capsys):
    """`--model X --weights official.pth` where X is a model of another family."""
    other = ModelVariant(name="other_model", family="other", config=None,
                         settings=_settings(), weights=None)
    monkeypatch.setattr(checkpoints, "list_models", lambda: ["other_model"])
    monkeypatch.setattr(checkpoints, "get_variant", lambda name: other)
    with pytest.raises(CheckpointError, match="is an official FC-CLIP checkpoint, not one of other_model"):
        load_model("other_model", weights=str(official_tiny))
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(synthetic_photo(40, 40)).save(photo)
    rc = main(["predict", str(photo), "--model", "other_model", "--weights", str(official_tiny),
               "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("vocabseg: error: ") and "pass the matching --model" in err[0]
    assert not (tmp_path / "out").exists()


def test_official_checkpoint_of_another_variant_of_the_family_does_not_fit(official_tiny):
    """`--model fcclip_rn50_coco --weights` a checkpoint of another FC-CLIP: strict shapes, one line."""
    with pytest.raises(CheckpointError) as info:
        load_model("fcclip_rn50_coco", weights=str(official_tiny))
    message = str(info.value)
    assert "does not fit this architecture" in message and "pass the matching --model" in message
    assert "\n" not in message


def test_settings_of_a_checkpoint_can_be_overridden_at_load(tmp_path, model):
    save_checkpoint(tmp_path / "v2.pth", model, family=FAMILY, config=tiny_config(), settings=_settings())
    predictor = Predictor.from_pretrained(str(tmp_path / "v2.pth"), inference={"ensemble_beta": 0.5, "min_size": 80},
                                          progress=False)
    assert predictor.settings == dataclasses.replace(
        _settings(), inference=dataclasses.replace(_settings().inference, min_size=80),
        family=dataclasses.replace(_settings().family, ensemble_beta=0.5))
    assert predictor.inference is predictor.settings.inference
