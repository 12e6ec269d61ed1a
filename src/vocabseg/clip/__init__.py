"""CLIP pieces shared by the model families: visual adapters, the text tower, weight loading."""
from vocabseg.clip.load import build_clip, create_clip, load_clip_state, load_clip_weights
from vocabseg.clip.text import TextEncoder, clip_text_encoder, encode_tokens, text_tower_fingerprint
from vocabseg.clip.visual import (
                                  CLIPBackbone,
                                  ConvNeXtAdapter,
                                  ModifiedResNetAdapter,
                                  VisualAdapter,
                                  VisualFeatures,
                                  visual_adapter,
)

__all__ = [
    "CLIPBackbone", "ConvNeXtAdapter", "ModifiedResNetAdapter", "TextEncoder", "VisualAdapter", "VisualFeatures",
    "build_clip", "clip_text_encoder", "create_clip", "encode_tokens", "load_clip_state", "load_clip_weights",
    "text_tower_fingerprint", "visual_adapter",
]
