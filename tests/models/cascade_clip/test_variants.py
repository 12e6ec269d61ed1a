"""The released Cascade-CLIP variants carry the prompt templates of their official text embeddings."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from vocabseg.models import get_family
from vocabseg.models.cascade_clip.config import CascadeCLIPConfig
from vocabseg.text import TextEmbeddingCache, parse_vocabulary
from vocabseg.text.templates import CASCADE_CLIP_SINGLE_TEMPLATE, CASCADE_CLIP_TEMPLATES
from vocabseg.zoo import get_variant

FAMILY = get_family("cascade_clip")


@pytest.mark.parametrize(("dataset", "templates"), [("voc20", ("a photo of a {}",)),  # voc12_single.npy
                                                    ("context59", CASCADE_CLIP_TEMPLATES),  # context-59_multi.npy
                                                    ("coco171", CASCADE_CLIP_TEMPLATES)])  # coco_multi.npy
def test_each_variant_carries_its_official_templates(dataset, templates):
    assert len(CASCADE_CLIP_TEMPLATES) == 15
    for setting in ("inductive", "transductive"):
        config = get_variant(f"cascade_clip_vitb16_{dataset}_{setting}").config
        assert config.prompt_templates == templates
    official_voc = FAMILY.guess_variant({"prompts.shallow": torch.zeros(1, 10, 768)}, source="x")
    assert official_voc.config.prompt_templates == CASCADE_CLIP_SINGLE_TEMPLATE  # official files get them too


def test_templates_travel_in_the_checkpoint_header():
    config = replace(FAMILY.tiny_config(), prompt_templates=CASCADE_CLIP_SINGLE_TEMPLATE)
    assert CascadeCLIPConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    older = {k: v for k, v in config.to_dict().items() if k != "prompt_templates"}  # written before the field
    assert CascadeCLIPConfig.from_dict(older).prompt_templates == CASCADE_CLIP_TEMPLATES


def test_the_text_classifier_embeds_with_the_variants_templates(tmp_path):
    torch.manual_seed(0)
    single = FAMILY.build(replace(FAMILY.tiny_config(), prompt_templates=CASCADE_CLIP_SINGLE_TEMPLATE)).eval()
    multi = FAMILY.build(FAMILY.tiny_config()).eval()
    multi.load_state_dict(single.state_dict())  # the same text tower: only the templates differ
    vocab = parse_vocabulary("cat; road")
    cache = TextEmbeddingCache(tmp_path)  # one cache: the template set is part of the key
    embedded = {}
    for name, model in (("single", single), ("multi", multi)):
        encoder = model.text_encoder()
        embedded[name] = cache.get_or_build(vocab, encoder.encode, encoder.encoder_id,
                                            templates=encoder.templates).embeddings
    direct = torch.nn.functional.normalize(single.text_encoder().encode(["a photo of a cat", "a photo of a road"]),
                                           dim=-1)
    torch.testing.assert_close(embedded["single"], direct, rtol=1e-4, atol=1e-5)  # the official single embedding
    assert not torch.allclose(embedded["multi"], embedded["single"], atol=1e-4)  # not the first entry read back
    assert len(list(tmp_path.rglob("*.pt"))) == 2
