"""Cascade-CLIP on tiny random models: sliding windows, seen-class offset, key table, bad input, CLI."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_datasets import write_cascade_voc

from vocabseg.checkpoints import parse_checkpoint, save_checkpoint
from vocabseg.cli import main
from vocabseg.errors import CheckpointError, ImageError, VocabularyError
from vocabseg.models import get_family
from vocabseg.models.cascade_clip.convert import KEY_TABLE
from vocabseg.models.cascade_clip.model import window_boxes
from vocabseg.predictor import Predictor
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo
from vocabseg.text import TextClassifier, TextEmbeddingCache, parse_vocabulary
from vocabseg.zoo import get_variant

FAMILY = get_family("cascade_clip")
VOCAB = "cat; dog, puppy; road"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FAMILY.build(FAMILY.tiny_config()).eval()


@pytest.fixture(scope="module")
def classifier(tiny):
    torch.manual_seed(1)
    embeddings = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)  # cat, dog, puppy, road
    return TextClassifier(embeddings=embeddings, synonym_index=torch.tensor([[0, 0], [1, 2], [3, 3]]),
                          seen=torch.tensor([True, False, True]), class_names=("cat", "dog", "road"))


def test_windows_cover_the_image_like_mmseg():
    assert window_boxes(512, 512, 512, 426) == [(0, 0, 512, 512)]
    assert window_boxes(512, 768, 512, 426) == [(0, 0, 512, 512), (0, 256, 512, 768)]
    boxes = window_boxes(1000, 600, 512, 426)  # rows (1000 - 512 + 425) // 426 + 1 = 3, columns 2
    assert [b[0] for b in boxes[::2]] == [0, 426, 488] and len(boxes) == 6
    cover = np.zeros((1000, 600), dtype=int)
    for y1, x1, y2, x2 in boxes:
        assert (y2 - y1, x2 - x1) == (512, 512)
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1


def test_sliding_windows_average_the_window_scores_batched_or_not(tiny, classifier):
    settings = FAMILY.default_settings(tiny.config).family  # window 64, stride 53
    image = torch.randn(3, 64, 110)
    with torch.no_grad():
        dense = tiny.slide(image, classifier, settings)
        one_by_one = tiny.slide(image, classifier, type(settings)(**{**settings.__dict__, "window_batch": 1}))
        boxes = window_boxes(64, 110, settings.window, settings.stride)
        windows = [tiny.window_scores(image[None, :, y1:y2, x1:x2], classifier, settings.seen_offset)[0]
                   for y1, x1, y2, x2 in boxes]
    assert boxes == [(0, 0, 64, 64), (0, 46, 64, 110)] and dense.shape == (3, 64, 110)
    torch.testing.assert_close(dense, one_by_one, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dense[:, :, :46], windows[0][:, :, :46])  # only the first window
    overlap = (windows[0][:, :, 46:] + windows[1][:, :, :18]) / 2  # the second window starts at x = 46
    torch.testing.assert_close(dense[:, :, 46:64], overlap)
    torch.testing.assert_close(dense[:, :, 64:], windows[1][:, :, 18:])


def test_seen_offset_lowers_only_seen_classes_and_synonyms_take_the_max(tiny, classifier):
    window = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = tiny.window_scores(window, classifier, 0.0)
        offset = tiny.window_scores(window, classifier, 0.1)
        per_row = tiny(window, TextClassifier(classifier.embeddings, torch.arange(4)[:, None],
                                              torch.zeros(4, dtype=torch.bool), tuple("abcd"))).pred_masks
    torch.testing.assert_close(plain - offset, torch.tensor([0.1, 0.0, 0.1]).view(1, 3, 1, 1).expand_as(plain))
    torch.testing.assert_close(plain[0, 1], per_row[0, 1:3].max(0).values.sigmoid())  # dog = max(dog, puppy)


def test_only_prompts_and_decoder_train(tiny):
    trainable = tiny.trainable_parameter_names()
    assert trainable and all(name.startswith(("prompts.", "decoder.")) for name in trainable)
    assert "decoder.stages.0.layers.0.cross_attn.v.weight" in trainable
    assert "decoder.stages.0.layers.1.cross_attn.v.weight" not in trainable  # the last layer's values never count
    assert not any(p.requires_grad for p in tiny.clip.parameters()) and not any(
        p.requires_grad for p in tiny.levels.parameters())


def test_key_table_maps_every_official_key_onto_the_real_size_model(reference_dir):
    sys.path.insert(0, str(reference_dir))
    from synth_weights import load_manifest

    model = FAMILY.build(get_variant("cascade_clip_vitb16_voc20_inductive").config)  # ViT-B/16, 10 prompt tokens
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    del model
    for setting in ("voc_inductive", "voc_transductive", "context_inductive", "coco_transductive"):
        manifest = load_manifest(reference_dir / "cascade_clip" / f"manifest_{setting}.json")
        renamed = KEY_TABLE.forward({key: torch.empty(0) for key in manifest}, source=setting)
        new_names = dict(zip(renamed, (k for k in manifest if not _dropped(k))))
        assert set(renamed) == set(expected), setting
        tokens = {"voc": 10, "context": 35, "coco": 50}[setting.split("_")[0]]
        for ours, official in new_names.items():
            shape = list(expected[ours])
            if ours.startswith(("prompts.shallow", "prompts.deep")):
                shape[1] = tokens
            assert tuple(manifest[official]["shape"]) == tuple(shape), (setting, ours)
        assert len(manifest) - len(renamed) == 3 * 3 * 6 + 1  # unused self-attention + norm1 of 9 layers, a buffer


def _dropped(key: str) -> bool:
    return key.endswith("empty_weight") or ".self_attn." in key or ".norm1." in key


def test_guess_variant_reads_the_prompt_length():
    for name, tokens in (("voc20", 10), ("context59", 35), ("coco171", 50)):
        state = {"prompts.shallow": torch.zeros(1, tokens, 768)}
        assert FAMILY.guess_variant(state, source="x").name == f"cascade_clip_vitb16_{name}_inductive"
    with pytest.raises(CheckpointError, match="no Cascade-CLIP variant has 7 prompt tokens"):
        FAMILY.guess_variant({"prompts.shallow": torch.zeros(1, 7, 768)}, source="x")


def test_cross_dataset_evaluation_drops_the_seen_offset():
    assert FAMILY.benchmark_overrides("cascade_voc_20", "cascade_voc_20_seen") == (None, {})
    assert FAMILY.benchmark_overrides("cascade_voc_20", "cascade_coco_stuff_171_seen") == (None, {"seen_offset": 0.0})
    assert FAMILY.benchmark_overrides("pascal_voc_20", "cascade_voc_20_seen") == ("cascade_voc_20", {})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "cascade.pth", family="cascade_clip",
                                min_size=64, max_size=1_000_000)


@pytest.fixture(scope="module")
def predictor(checkpoint, tmp_path_factory):
    predictor = Predictor.from_pretrained(str(checkpoint), progress=False,
                                          text_cache=TextEmbeddingCache(tmp_path_factory.mktemp("text")))
    predictor.set_vocabulary(VOCAB, progress=False)
    return predictor


def test_predictor_labels_every_pixel_semantic_only(predictor):
    result = predictor.predict(synthetic_photo(48, 80), task="semantic")  # short side 48 -> 64
    assert result.semantic.shape == (48, 80) and 0 <= result.semantic.min() and result.semantic.max() < 3
    with pytest.raises(Exception, match="Cascade-CLIP models give semantic output, not panoptic"):
        predictor.predict(synthetic_photo(48, 80), task="panoptic")


def test_bad_inputs_are_one_line_errors(predictor, checkpoint, tmp_path):
    small = predictor.with_settings({"min_size": 40})
    with pytest.raises(ImageError, match=r"smaller than the 64x64 window of Cascade-CLIP: keep min_size >= 64"):
        small.predict(synthetic_photo(48, 80), task="semantic")
    predictor.with_settings({"min_size": 64})
    predictor.set_vocabulary("cat", progress=False)
    with pytest.raises(VocabularyError, match="name at least two"):
        predictor.predict(synthetic_photo(48, 80), task="semantic")
    predictor.set_vocabulary(VOCAB, progress=False)
    wrong_rows = tmp_path / "two.npy"
    np.save(wrong_rows, np.zeros((2, 32), dtype=np.float16))
    with pytest.raises(VocabularyError, match="2 rows but the vocabulary has 3 classes"):
        predictor.set_vocabulary(VOCAB, text_embeddings=wrong_rows)
    fcclip = save_tiny_checkpoint(tmp_path / "fcclip.pth")
    with pytest.raises(CheckpointError, match="vocabseg FC-CLIP checkpoint, not one of cascade_clip_vitb16_voc20"):
        parse_checkpoint(torch.load(fcclip, weights_only=False), source=str(fcclip),
                         variant=get_variant("cascade_clip_vitb16_voc20_inductive"))


def test_npy_embeddings_are_used_as_stored(predictor, tmp_path):
    rows = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float16)  # not unit norm
    np.save(tmp_path / "rows.npy", rows)
    predictor.set_vocabulary(VOCAB, text_embeddings=tmp_path / "rows.npy")
    assert torch.equal(predictor.classifier.embeddings, torch.from_numpy(rows.astype(np.float32)))
    assert predictor.classifier.synonym_index.shape == (3, 1)
    predictor.set_vocabulary(VOCAB, progress=False)


def test_cli_predict_and_eval_end_to_end(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray(synthetic_photo(70, 90)).save(photo)
    np.save(tmp_path / "emb.npy", np.random.default_rng(1).standard_normal((3, 32)).astype(np.float16))
    assert main(["predict", str(photo.parent), "--model", str(checkpoint), "--vocab", VOCAB, "--output",
                 str(tmp_path / "out"), "--text-embeddings", str(tmp_path / "emb.npy")]) == 0  # fmt: skip
    labels = np.asarray(Image.open(tmp_path / "out" / "semantic" / "photo.png"))
    assert labels.shape == (70, 90)
    assert "text_embeddings" in json.loads((tmp_path / "out" / "run.json").read_text())["identity"]
    write_cascade_voc(tmp_path / "data")
    assert main(["eval", "--model", str(checkpoint), "--dataset", "cascade_voc_20_val", "--data-root",
                 str(tmp_path / "data"), "--output", str(tmp_path / "eval"), "--no-progress"]) == 0  # fmt: skip
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {"mIoU", "mIoU_seen", "mIoU_unseen", "hIoU"} <= set(results["semantic"])


def test_vocabseg_checkpoint_round_trip_keeps_the_family(tmp_path, tiny):
    path = save_checkpoint(tmp_path / "c.pth", tiny, family=FAMILY, config=tiny.config,
                           settings=FAMILY.default_settings(tiny.config), train_vocabulary="cascade_voc_20_seen")
    loaded = parse_checkpoint(torch.load(path, weights_only=False), source=str(path))
    assert loaded.family is FAMILY and loaded.train_vocabulary == "cascade_voc_20_seen"
    assert loaded.settings.family.window == 64 and loaded.settings.family.stride == 53
    assert parse_vocabulary(VOCAB).class_names == ["cat", "dog", "road"]


def test_missing_weights_name_the_share_code_and_the_cache_path(tmp_path, monkeypatch):
    from vocabseg.downloads import fetch_official_weights

    monkeypatch.setenv("VOCABSEG_HOME", str(tmp_path))
    with pytest.raises(CheckpointError) as error:  # no network attempt: a share page is not a file
        fetch_official_weights(get_variant("cascade_clip_vitb16_context59_inductive"))
    message = str(error.value)
    assert "Baidu Netdisk share, access code 5gvr" in message and "\n" not in message
    assert str(tmp_path / "checkpoints" / "cascade_clip_vitb16_context59_inductive.pth") in message
