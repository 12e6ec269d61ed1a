"""The panopticapi drop-in: same arguments and result layout as panopticapi's pq_compute."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vocabseg.eval import evaluate_panoptic_files, pq_compute_files


def _write(folder, name, ids, segments, categories=None):
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "img.png")
    data = {"annotations": [{"image_id": 1, "file_name": "img.png", "segments_info": segments}],
            "images": [{"id": 1, "file_name": "img.jpg", "height": 4, "width": 4}]}
    if categories:
        data["categories"] = categories
    (folder.parent / f"{name}.json").write_text(json.dumps(data))
    return folder.parent / f"{name}.json"


def test_layout_and_values_match_a_hand_computed_case(tmp_path):
    categories = [{"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}]
    gt_ids = np.array([[1, 1, 2, 2]] * 4)
    pred_ids = np.array([[1, 1, 1, 2]] * 4)  # person grows into a quarter of the sky
    gt = _write(tmp_path / "gt", "gt", gt_ids, [{"id": 1, "category_id": 1, "area": 8, "iscrowd": 0},
                                                {"id": 2, "category_id": 2, "area": 8, "iscrowd": 0}], categories)
    pred = _write(tmp_path / "pred", "pred", pred_ids, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}])
    result = pq_compute_files(gt, pred, tmp_path / "gt", tmp_path / "pred")
    assert set(result) == {"All", "Things", "Stuff", "per_class"}
    # person: IoU 8/12 matched; sky: IoU 4/8 = 0.5 is not > 0.5 -> one FP and one FN
    assert result["per_class"][1]["pq"] == pytest.approx(8 / 12)
    assert result["per_class"][2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert result["All"]["pq"] == pytest.approx((8 / 12) / 2) and result["All"]["n"] == 2
    from_files = evaluate_panoptic_files(gt, pred, tmp_path / "gt", tmp_path / "pred")
    assert from_files["PQ"] == pytest.approx(100 * result["All"]["pq"])
