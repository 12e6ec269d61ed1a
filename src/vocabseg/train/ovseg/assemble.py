"""Stage (e): the adapted CLIP written into a segmenter checkpoint (the official tools/ovseg_replace_clip.py).

Every ``clip.*`` weight of the segmenter is replaced by the CLIP file's. A CLIP with a mask
embedding (stage d) sets the checkpoint's ``mask_prompt_depth`` to its depth; one without
(stage c, or a plain fine-tuned CLIP) sets it to 0, so regions are encoded without prompts
(the official ``MASK_PROMPT_FWD False``). The result is an ordinary vocabseg checkpoint.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from vocabseg.checkpoints import resolve_checkpoint, save_checkpoint
from vocabseg.errors import ConfigError
from vocabseg.state_dict import check_state_dict
from vocabseg.train.ovseg.clip_model import read_clip_file
from vocabseg.train.ovseg.config import StageConfig

logger = logging.getLogger(__name__)


def assemble_checkpoint(segmenter: str, clip_file: str, output: str | Path) -> Path:
    """Writes ``output``: the ``segmenter`` (checkpoint or zoo name) with the CLIP of ``clip_file``."""
    ckpt = resolve_checkpoint(segmenter)
    if ckpt.family.name != "ovseg":
        raise ConfigError(f"assemble.segmenter={segmenter} is a {ckpt.family.title} checkpoint; "
                          "give an OVSeg one (a stage-a run's model_final.pth or an ovseg_* model)")
    clip_state, depth = read_clip_file(clip_file)
    config = dataclasses.replace(ckpt.config, mask_prompt_depth=depth or 0)
    model = ckpt.family.build(config)
    state = {k: v for k, v in ckpt.state_dict.items() if not k.startswith("clip.")}
    state.update({f"clip.{k}": v for k, v in clip_state.items()})
    check_state_dict(model, state, source=f"{segmenter} + {clip_file}",
                     fix=f"the CLIP file must hold the segmenter's CLIP ({ckpt.config.clip_model_name})")
    model.load_state_dict(state)
    path = save_checkpoint(output, model, family=ckpt.family, config=config, settings=ckpt.settings,
                           train_vocabulary=ckpt.train_vocabulary)
    logger.info("wrote %s (mask prompt depth %d)", path, config.mask_prompt_depth)
    return path


def assemble_from_config(config: StageConfig, *, overwrite: bool = False) -> Path:
    """``output`` is the checkpoint file to write (``.pth`` added when it has no suffix).

    Raises:
        ConfigError: the file exists (an earlier assemble) and ``overwrite`` is not set: the run-folder
            rule for a file target, checked before anything is read.
    """
    output = Path(config.output)
    output = output if output.suffix else output.with_suffix(".pth")
    if output.exists() and not overwrite:
        raise ConfigError(f"--output {output} exists (an earlier assemble); add --overwrite to replace it "
                          "or choose another --output")
    return assemble_checkpoint(config.assemble.segmenter, config.assemble.clip, output)
