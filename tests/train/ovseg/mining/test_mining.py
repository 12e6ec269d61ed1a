"""Stage (b): nouns from captions, CLIP matching of planted regions, the resumable pair folder, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from vocabseg.errors import ConfigError, DatasetError
from vocabseg.testing import file_hashes, one_error_line
from vocabseg.train.ovseg.mining.captions import read_captions
from vocabseg.train.ovseg.mining.miner import MiningSettings, Proposals, mine
from vocabseg.train.ovseg.mining.nouns import extract_nouns
from vocabseg.train.ovseg.mining.pairs import PairWriter, read_pairs, read_skips

COLOURS = {"red": (230, 20, 20), "blue": (20, 20, 230), "green": (20, 230, 20)}
NOUN_COLOUR = {"ball": "red", "box": "blue", "tree": "green", "table": None}  # table: no region of its colour
SIZE = 224


def _embed_colour(rgb) -> torch.Tensor:
    return F.normalize(torch.as_tensor(rgb, dtype=torch.float32) / 255 - 0.5, dim=-1)


class PlantedMatcher:
    """Proposals: one per planted colour (empty for an all-grey image); CLIP: the region's mean colour."""

    def proposals(self, image, nouns):
        regions, masks = [], []
        for rgb in COLOURS.values():
            mask = torch.from_numpy((image == rgb).all(-1)).float()
            if mask.sum() == 0:
                continue
            crop = torch.from_numpy(image).permute(2, 0, 1).float()
            crop = F.interpolate(crop[None], size=(SIZE, SIZE), mode="nearest")[0]
            mean = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1) * 255
            std = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1) * 255
            fill = mask[None] > 0
            painted = torch.where(F.interpolate(fill[None].float(), size=(SIZE, SIZE))[0] > 0, crop, mean)
            regions.append((painted - mean) / std)
            masks.append(F.interpolate(mask[None, None], size=(SIZE, SIZE))[0])
        if not regions:
            return Proposals(torch.empty(0, 3, SIZE, SIZE), torch.empty(0, 1, SIZE, SIZE))
        return Proposals(torch.stack(regions), torch.stack(masks))

    def embed_regions(self, proposals):
        mean = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1) * 255
        std = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1) * 255
        rgb = [((r * std + mean) * m).sum((1, 2)) / m.sum() for r, m in zip(proposals.regions, proposals.masks)]
        return torch.stack([_embed_colour(c) for c in rgb])

    def embed_nouns(self, nouns):
        return torch.stack([_embed_colour(COLOURS[NOUN_COLOUR[n]]) if NOUN_COLOUR.get(n) else _embed_colour((0, 0, 0))
                            for n in nouns])


def _image(*colours, seed=0) -> np.ndarray:
    image = np.full((64, 96, 3), 128, np.uint8)
    rng = np.random.default_rng(seed)
    for name in colours:
        top, left = rng.integers(0, 40), rng.integers(0, 70)
        image[top:top + 20, left:left + 20] = COLOURS[name]
    return image


@pytest.fixture
def dataset(tmp_path):
    """4 images; captions in the COCO format (one for an image that is not in the folder)."""
    images = tmp_path / "images"
    images.mkdir()
    content = {"a.png": _image("red", "blue"), "b.png": _image("green", seed=1), "c.png": _image(seed=2),
               "d.png": _image("red", seed=3)}
    for name, array in content.items():
        Image.fromarray(array).save(images / name)
    captions = {"a.png": "A red ball next to a blue box on a table.", "b.png": "Two trees in a park.",
                "c.png": "A grey ball.", "d.png": "Very nice!", "gone.png": "A ball."}
    coco = {"images": [{"id": i, "file_name": n} for i, n in enumerate(captions)],
            "annotations": [{"id": i, "image_id": i, "caption": c} for i, c in enumerate(captions.values())]}
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    return images, tmp_path / "captions.json"


def test_nouns_come_from_the_tagger():
    assert extract_nouns("Two dogs are playing with a frisbee in the grass near the trees.") == [
        "dog", "frisbee", "grass", "tree"]
    assert extract_nouns("Very nice!") == []


def test_planted_nouns_are_paired_with_their_regions_and_bad_images_are_recorded(dataset, tmp_path):
    images, captions_file = dataset
    (images / "e.png").write_bytes(b"\x89PNG truncated")
    captions, missing = read_captions(captions_file, images, per_image=1)
    assert missing == ["gone.png"]
    captions["e.png"] = ["A broken ball."]
    writer = PairWriter(tmp_path / "pairs", settings={"test": 1})
    summary = mine(images, captions, writer, PlantedMatcher(), MiningSettings(min_score=0.5), missing=missing)
    assert (summary.mined, summary.skipped) == (2, 4)
    pairs = {(p.image, p.noun): p for p in read_pairs(tmp_path / "pairs")}
    assert set(pairs) == {("a.png", "ball"), ("a.png", "box"), ("b.png", "tree")}  # table matches no region
    for (_, noun), pair in pairs.items():
        crop = np.asarray(Image.open(tmp_path / "pairs" / pair.crop))
        mask = np.asarray(Image.open(tmp_path / "pairs" / pair.mask)) > 0
        assert np.abs(crop[mask].mean(0) - COLOURS[NOUN_COLOUR[noun]]).max() < 2 and pair.score > 0.99
    reasons = {s["image"]: s["reason"] for s in read_skips(tmp_path / "pairs")}
    assert reasons.pop("e.png").startswith("unreadable image (")
    assert reasons == {"gone.png": "image file missing from mine.images", "c.png": "no proposal",
                       "d.png": "no nouns in its captions"}


def test_mining_resumes_where_it_stopped(dataset, tmp_path):
    images, captions_file = dataset
    captions, _ = read_captions(captions_file, images, per_image=1)
    root = tmp_path / "pairs"
    first = mine(images, {"a.png": captions["a.png"]}, PairWriter(root, settings={"v": 1}), PlantedMatcher(),
                 MiningSettings())
    assert first.mined == 1
    with open(root / "pairs.jsonl", "a") as handle:  # a run killed after writing b.png's pairs, before done.txt
        handle.write(json.dumps({"image": "b.png", "crop": "x", "mask": "y", "noun": "tree", "score": 1.0,
                                 "caption": "c"}) + "\n")
    writer = PairWriter(root, settings={"v": 1})
    second = mine(images, captions, writer, PlantedMatcher(), MiningSettings())
    assert second.already_done == 1 and second.mined == 1  # a.png not redone; b.png mined again, once
    assert sorted((p.image, p.noun) for p in read_pairs(root)) == [
        ("a.png", "ball"), ("a.png", "box"), ("a.png", "table"), ("b.png", "park"), ("b.png", "tree")]
    with pytest.raises(ConfigError, match="mining.json was made with other settings \\(v: 1 -> 2\\)"):
        PairWriter(root, settings={"v": 2})


def test_a_line_cut_short_by_a_killed_run_is_dropped_on_resume(tmp_path):
    root = tmp_path / "pairs"
    crop, mask = np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), bool)
    PairWriter(root, settings={}).add("a.png", [(crop, mask, "ball", 1.0, "a ball")])
    for name, torn in (("pairs.jsonl", '{"image": "b.png", "cro'), ("done.txt", "b.p")):
        with open(root / name, "a") as handle:
            handle.write(torn)
    assert [p.image for p in read_pairs(root)] == ["a.png"]  # training on the folder as the run left it
    writer = PairWriter(root, settings={})
    assert writer.done == {"a.png"}
    writer.add("b.png", [(crop, mask, "box", 1.0, "a box")])
    assert [(p.image, p.noun) for p in read_pairs(root)] == [("a.png", "ball"), ("b.png", "box")]
    assert (root / "done.txt").read_text() == "a.png\nb.png\n"


def test_caption_files_that_do_not_fit_are_one_line_errors(dataset, tmp_path):
    images, _ = dataset
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": [{"id": 1, "file_name": "zzz.jpg"}],
                                 "annotations": [{"image_id": 1, "caption": "a cat"}]}))
    with pytest.raises(DatasetError, match="does not match the images in .* \\(e.g. 'zzz.jpg' is not there\\)"):
        read_captions(other, images, per_image=1)
    other.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DatasetError, match="is not a COCO captions file"):
        read_captions(other, images, per_image=1)
    other.write_text("{")
    with pytest.raises(DatasetError, match="is not valid JSON"):
        read_captions(other, images, per_image=1)
    lines = tmp_path / "caps.jsonl"
    lines.write_text('{"image": "a.png", "caption": "a ball"}\n{"picture": 1}\n')
    with pytest.raises(DatasetError, match="caps.jsonl:2: not a"):
        read_captions(lines, images, per_image=1)


def test_mine_stage_runs_a_tiny_segmenter_and_resumes(dataset, tmp_path, one_thread):
    from vocabseg.testing import save_tiny_checkpoint
    from vocabseg.train.ovseg.config import stage_config_from_dict
    from vocabseg.train.ovseg.run import run_stage

    images, captions_file = dataset
    segmenter = save_tiny_checkpoint(tmp_path / "seg.pth", family="ovseg")
    config = stage_config_from_dict({"stage": "mine", "output": str(tmp_path / "mined"), "device": "cpu",
                                     "mine": {"images": str(images), "captions": str(captions_file),
                                              "segmenter": str(segmenter), "mask_threshold": 0.0, "limit": 2}})
    first = run_stage(config)
    assert first.mined + first.skipped == 3  # a.png, b.png and the missing gone.png
    assert {p.image for p in read_pairs(tmp_path / "mined")} <= {"a.png", "b.png"}
    config.mine.limit = None
    second = run_stage(config, resume="auto")
    assert second.already_done == 3 and second.mined + second.skipped == 2


def test_mining_without_the_extra_names_it(monkeypatch):
    import builtins

    from vocabseg.errors import ConfigError
    from vocabseg.train.ovseg.mining import nouns

    real_import = builtins.__import__

    def no_textblob(name, *args, **kwargs):
        if name.startswith("textblob"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    nouns._tagger.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_textblob)
    try:
        with pytest.raises(ConfigError, match=r"pip install 'vocabseg\[mining\]'"):
            extract_nouns("a cat")
    finally:
        monkeypatch.undo()
        nouns._tagger.cache_clear()


def test_two_mining_ranks_write_the_same_dataset_as_one(dataset, tmp_path):
    images, captions_file = dataset
    captions, missing = read_captions(captions_file, images, per_image=1)
    mine(images, captions, PairWriter(tmp_path / "one", settings={}), PlantedMatcher(), MiningSettings(),
         missing=missing)
    for rank in (1, 0):  # each rank its own files in the shared folder
        mine(images, captions, PairWriter(tmp_path / "two", settings={}, shard=rank), PlantedMatcher(),
             MiningSettings(), missing=missing, rank=rank, world_size=2)
    assert (tmp_path / "two" / "pairs-1.jsonl").is_file()
    assert read_pairs(tmp_path / "two") == read_pairs(tmp_path / "one")
    assert sorted(map(str, read_skips(tmp_path / "two"))) == sorted(map(str, read_skips(tmp_path / "one")))


@pytest.fixture
def mine_args(dataset, tmp_path, one_thread) -> list[str]:
    """`vocabseg train` of the mine stage with a tiny random OVSeg segmenter into tmp_path/mined, 2 images."""
    from vocabseg.testing import save_tiny_checkpoint

    images, captions_file = dataset
    segmenter = save_tiny_checkpoint(tmp_path / "seg.pth", family="ovseg")
    return ["train", "--preset", "ovseg_mine_coco", "--output", str(tmp_path / "mined"), "device=cpu",
            f"mine.images={images}", f"mine.captions={captions_file}", f"mine.segmenter={segmenter}",
            "mine.mask_threshold=0.0"]


def test_a_pair_folder_is_continued_only_with_resume_and_replaced_with_overwrite(mine_args, tmp_path, capsys):
    from vocabseg.cli import main

    mined = tmp_path / "mined"
    assert main([*mine_args, "--resume-from", str(tmp_path / "seg.pth")]) == 2
    assert "--resume-from does not apply to the mine stage" in one_error_line(capsys) and not mined.exists()
    assert main([*mine_args, "mine.limit=2"]) == 0
    capsys.readouterr()  # its summary
    before = file_hashes(mined)
    assert main([*mine_args, "mine.limit=2"]) == 2  # a rerun without --resume
    line = one_error_line(capsys)
    assert "holds a mined pair folder (done.txt, mining.json, pairs.jsonl)" in line and "--resume" in line
    assert main([*mine_args, "mine.limit=2", "mine.mask_threshold=0.5", "--resume"]) == 2  # other pairs
    assert "mask_threshold: 0.0 -> 0.5" in one_error_line(capsys)
    assert file_hashes(mined) == before
    assert main([*mine_args, "--resume"]) == 0  # the rest of the images; those done stay done
    done = (mined / "done.txt").read_text().splitlines()
    assert sorted(done) == ["a.png", "b.png", "c.png", "d.png", "gone.png"] and len(done) == 5  # each once
    records = [json.loads(line) for line in (mined / "resumes.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["images_done"] == 3
    assert records[0]["changes"] == [{"key": "limit", "old": 2, "new": None}]
    assert json.loads((mined / "mining.json").read_text())["limit"] == 2  # as the folder started
    assert main([*mine_args, "mine.limit=1", "--overwrite"]) == 0
    assert sorted((mined / "done.txt").read_text().splitlines()) == ["a.png", "gone.png"]  # nothing of the old run
    assert not (mined / "resumes.jsonl").exists()
    assert all(p.name.startswith("a_") for p in (mined / "crops").iterdir())


def test_a_pair_folder_being_mined_is_refused_naming_the_miner(mine_args, tmp_path, capsys):
    from vocabseg.cli import main
    from vocabseg.locks import RunLock

    holder = RunLock(tmp_path / "mined", "vocabseg train (mine)")
    holder.acquire()  # another mining process is writing the folder
    try:
        assert main([*mine_args, "mine.limit=1", "--resume"]) == 2
    finally:
        holder.release()
    assert "is in use by vocabseg train (mine) (pid" in one_error_line(capsys)
    assert list((tmp_path / "mined").iterdir()) == []  # nothing written
