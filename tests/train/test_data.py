"""Sample stream, datasets on disk, padding collate, and one-line dataset errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vocabseg.data.errors import DatasetError
from vocabseg.data.io import id_to_rgb
from vocabseg.errors import ConfigError
from vocabseg.text import parse_vocabulary
from vocabseg.train.build import build_source
from vocabseg.train.config import DataSection
from vocabseg.train.data import PadCollate, StreamSampler, TrainDataset
from vocabseg.train.sources import FileSource, SyntheticShapes, read_label_folder, read_panoptic_folder


def take(sampler: StreamSampler, n: int) -> list[list]:
    stream = iter(sampler)
    return [next(stream) for _ in range(n)]


def test_stream_is_deterministic_and_epochs_are_permutations():
    def first_keys(seed: int) -> list:
        sampler = StreamSampler(7, seed=seed, rank=0, world_size=1, batch_per_gpu=7, accum_steps=1)
        return [k for batch in take(sampler, 3) for k in batch]

    keys, again, other = first_keys(3), first_keys(3), first_keys(4)
    assert keys == again and keys != other
    for epoch in range(3):
        assert sorted(k.index for k in keys[epoch * 7 : epoch * 7 + 7]) == list(range(7))
    assert [k.position for k in keys] == list(range(21))
    assert len({k.seed for k in keys}) == 21  # every sample has its own augmentation seed


def test_ranks_and_accumulation_split_the_same_stream():
    one = take(StreamSampler(10, seed=0, rank=0, world_size=1, batch_per_gpu=2, accum_steps=2), 6)  # 3 iterations
    rank0 = take(StreamSampler(10, seed=0, rank=0, world_size=2, batch_per_gpu=2, accum_steps=1), 3)
    rank1 = take(StreamSampler(10, seed=0, rank=1, world_size=2, batch_per_gpu=2, accum_steps=1), 3)
    for it in range(3):
        assert one[2 * it] == rank0[it] and one[2 * it + 1] == rank1[it]
    assert not {k.position for b in rank0 for k in b} & {k.position for b in rank1 for k in b}


def test_stream_resumes_at_a_position():
    full = take(StreamSampler(5, seed=1, rank=0, world_size=1, batch_per_gpu=3, accum_steps=1), 4)
    resumed = take(StreamSampler(5, seed=1, rank=0, world_size=1, batch_per_gpu=3, accum_steps=1, start_position=6), 2)
    assert resumed == full[2:]


def test_collate_pads_images_and_masks_alike():
    source = SyntheticShapes(num_images=3, size=40, seed=0)
    dataset = TrainDataset(source, image_size=40, min_scale=0.5, max_scale=1.0, flip=True, pad=False)
    keys = take(StreamSampler(3, seed=0, rank=0, world_size=1, batch_per_gpu=3, accum_steps=1), 1)[0]
    examples = [dataset[k] for k in keys]
    batch = PadCollate((10.0, 20.0, 30.0), (2.0, 2.0, 2.0), 32)(examples)
    height, width = batch.images.shape[-2:]
    assert height % 32 == 0 and width % 32 == 0 and height >= max(e.image.shape[1] for e in examples)
    for i, e in enumerate(examples):
        h, w = e.image.shape[1:]
        assert batch.targets[i]["masks"].shape == (len(e.labels), height, width)
        assert torch.equal(batch.targets[i]["masks"][:, :h, :w], e.masks) and not batch.targets[i]["masks"][:, h:].any()
        assert (batch.images[i, :, h:] == 0).all() and (batch.images[i, :, :, w:] == 0).all()
        torch.testing.assert_close(batch.images[i, 0, :h, :w], (e.image[0].float() - 10.0) / 2.0)
    assert [k.position for k in batch.keys] == [0, 1, 2]


def write_panoptic_folder(root, *, crowd_only_second=True):
    """Two 32x48 images; image 2 has only a crowd segment (it must be skipped)."""
    (root / "images").mkdir(parents=True)
    (root / "pan").mkdir()
    annotations = []
    for n in (1, 2):
        ids = np.zeros((32, 48), dtype=np.int64)
        ids[:16], ids[16:, :20] = 1000 + n, 2000 + n
        Image.fromarray(np.full((32, 48, 3), 60 * n, dtype=np.uint8)).save(root / "images" / f"{n}.jpg")
        Image.fromarray(id_to_rgb(ids)).save(root / "pan" / f"{n}.png")
        crowd = crowd_only_second and n == 2
        annotations.append({"image_id": n, "file_name": f"{n}.png", "segments_info": [
            {"id": 1000 + n, "category_id": 7, "iscrowd": int(crowd)},
            {"id": 2000 + n, "category_id": 9, "iscrowd": int(crowd)}]})
    data = {"images": [{"id": n, "file_name": f"{n}.jpg", "height": 32, "width": 48} for n in (1, 2)],
            "annotations": annotations,
            "categories": [{"id": 7, "name": "cat", "isthing": 1}, {"id": 9, "name": "grass", "isthing": 0}]}
    (root / "pan.json").write_text(json.dumps(data))
    return DataSection(format="panoptic_json", images=str(root / "images"), panoptic_dir=str(root / "pan"),
                       panoptic_json=str(root / "pan.json"))


def test_panoptic_json_folder(tmp_path):
    source, vocab = build_source(write_panoptic_folder(tmp_path), image_size=64, seed=0)
    assert vocab.class_names == ["cat", "grass"] and vocab.thing_mask == [True, False]
    assert len(source) == 1  # the crowd-only image is skipped, as the official loader does
    example = TrainDataset(source, image_size=64, min_scale=1.0, max_scale=1.0, flip=False)[
        take(StreamSampler(1, seed=0, rank=0, world_size=1, batch_per_gpu=1, accum_steps=1), 1)[0][0]]
    assert example.labels.tolist() == [0, 1] and example.masks.shape == (2, 64, 64)
    # Resized x4/3 to 43x64, then padded: rows 0-20 are "cat", rows 22-42 x columns 0-25 "grass", row 43 on VOID.
    assert example.masks[0, :21].all() and example.masks[1, 22:43, :26].all() and not example.masks[:, 43:].any()


def write_semantic_folder(root, values):
    (root / "img").mkdir(parents=True)
    (root / "lab").mkdir()
    for n, value in enumerate(values):
        label = np.full((20, 30), 255, dtype=np.uint8)
        label[:10], label[10:, :5] = value, 1
        Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(root / "img" / f"a{n}.png")
        Image.fromarray(label).save(root / "lab" / f"a{n}.png")
    (root / "classes.txt").write_text("sky [stuff]\nroad [stuff]\ncar\n")


def test_semantic_folder_makes_one_segment_per_class(tmp_path):
    write_semantic_folder(tmp_path, [2])
    data = DataSection(format="semantic", images=str(tmp_path / "img"), labels=str(tmp_path / "lab"),
                       vocabulary=str(tmp_path / "classes.txt"))
    source, vocab = build_source(data, image_size=32, seed=0)
    assert vocab.class_names == ["sky", "road", "car"]
    raw = source[0]
    assert sorted(s.category for s in raw.segments) == [1, 2]
    assert (raw.ids[:10] == 3).all() and (raw.ids[10:, :5] == 2).all() and (raw.ids[10:, 5:] == 0).all()  # 255 -> VOID


def test_label_beyond_the_class_list_is_a_one_line_error(tmp_path):
    write_semantic_folder(tmp_path, [7])
    files = read_label_folder(images=tmp_path / "img", labels=tmp_path / "lab", ignore_label=255)
    source = FileSource(files, num_classes=3)
    with pytest.raises(DatasetError, match=r"a0\.png holds class 7 but the vocabulary has 3 classes") as error:
        source[0]
    assert "\n" not in str(error.value)


def test_missing_label_map_names_the_file(tmp_path):
    write_semantic_folder(tmp_path, [1])
    (tmp_path / "lab" / "a0.png").unlink()
    with pytest.raises(DatasetError, match=r"a0\.jpg|a0\.png.*same file stem"):
        read_label_folder(images=tmp_path / "img", labels=tmp_path / "lab", ignore_label=255)


def test_missing_panoptic_png_names_the_file(tmp_path):
    write_panoptic_folder(tmp_path, crowd_only_second=False)
    (tmp_path / "pan" / "2.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 4 files are missing, e\.g\. .*2\.png; point data\.images"):
        read_panoptic_folder(images=tmp_path / "images", panoptic_dir=tmp_path / "pan",
                             panoptic_json=tmp_path / "pan.json", vocabulary=None)


def test_unknown_category_and_missing_settings_are_one_line_errors(tmp_path):
    data = write_panoptic_folder(tmp_path)
    with pytest.raises(DatasetError, match="category id 7 is not in the vocabulary"):
        read_panoptic_folder(images=tmp_path / "images", panoptic_dir=tmp_path / "pan",
                             panoptic_json=tmp_path / "pan.json", vocabulary=parse_vocabulary("dog; sky [stuff]"))
    with pytest.raises(ConfigError, match="data.format=semantic needs data.images, data.labels, data.vocabulary"):
        build_source(DataSection(format="semantic"), image_size=32, seed=0)
    with pytest.raises(ConfigError, match="data.num_images=0; the synthetic training set needs at least 1 image"):
        build_source(DataSection(format="synthetic", num_images=0), image_size=32, seed=0)
    with pytest.raises(DatasetError, match="the training set is empty"):
        StreamSampler(0, seed=0, rank=0, world_size=1, batch_per_gpu=1, accum_steps=1)
    with pytest.raises(DatasetError, match="not valid JSON"):
        (tmp_path / "pan.json").write_text("{")
        build_source(data, image_size=32, seed=0)
