"""Stage (e): an adapted CLIP assembled into a segmenter checkpoint loads in the predictor."""
from __future__ import annotations

import pytest
import torch

from vocabseg import Predictor
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo
from vocabseg.train.ovseg.assemble import assemble_checkpoint
from vocabseg.train.ovseg.run import run_stage


@pytest.mark.parametrize(("stage", "depth"), [("prompt", 2), ("adapt", 0)])
def test_assembled_checkpoint_predicts_with_the_adapted_clip(stage_config, tmp_path, stage, depth):
    segmenter = save_tiny_checkpoint(tmp_path / "seg.pth", family="ovseg", train_vocabulary="coco_stuff")
    trainer = run_stage(stage_config(stage, max_iter=2))
    path = assemble_checkpoint(str(segmenter), str(tmp_path / "run" / "clip_final.pth"), tmp_path / "new.pth")
    predictor = Predictor.from_pretrained(str(path))
    model = predictor.model
    assert model.config.mask_prompt_depth == depth
    adapted = trainer.clip.state_dict()
    for name, value in model.clip.state_dict().items():
        assert torch.equal(value, adapted[name]), name
    predictor.set_vocabulary("cat; dog; sky [stuff]")
    photo = synthetic_photo()
    semantic = predictor.predict(photo, task="semantic").semantic
    assert semantic.shape == photo.shape[:2] and 0 <= semantic.min() <= semantic.max() < 3  # the 3 classes set


def test_assemble_refuses_a_clip_of_another_architecture(tmp_path):
    segmenter = save_tiny_checkpoint(tmp_path / "seg.pth", family="ovseg")
    torch.save({"state_dict": {"visual.proj": torch.zeros(3, 3)}}, tmp_path / "clip.pt")
    with pytest.raises(CheckpointError, match="the CLIP file must hold the segmenter's CLIP"):
        assemble_checkpoint(str(segmenter), str(tmp_path / "clip.pt"), tmp_path / "out.pth")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="is not a CLIP checkpoint"):
        assemble_checkpoint(str(segmenter), str(tmp_path / "junk.pt"), tmp_path / "out.pth")
    fcclip = save_tiny_checkpoint(tmp_path / "fc.pth")
    with pytest.raises(ConfigError, match="is a FC-CLIP checkpoint; give an OVSeg one"):
        assemble_checkpoint(str(fcclip), str(tmp_path / "clip.pt"), tmp_path / "out.pth")
