"""Text-classifier cost: naive 77-token encoding vs. vocabseg's shared-prefix encoding (exact, fast).

Prints seconds for a built-in vocabulary through a real-size (random-weight) CLIP text tower.
Usage: python benchmarks/text_encoding.py [--model convnext_large_d_320] [--vocab ade20k_150] [--limit 1400]
"""
from __future__ import annotations

import argparse
import time

import open_clip
import torch

from vocabseg.clip import clip_text_encoder, create_clip
from vocabseg.text import build_text_classifier, expand_prompts, get_vocabulary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="convnext_large_d_320")
    parser.add_argument("--vocab", default="ade20k_150")
    parser.add_argument("--limit", type=int, default=1400, help="prompts timed for the naive baseline")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    clip = create_clip(args.model, quick_gelu=args.model.startswith("RN")).eval()
    tokenizer = open_clip.get_tokenizer(args.model)
    vocab = get_vocabulary(args.vocab)
    prompts, _ = expand_prompts(vocab)
    print(f"{args.vocab}: {len(vocab)} classes, {len(prompts)} prompts, {torch.get_num_threads()} threads")

    start = time.perf_counter()
    for i in range(0, args.limit, 128):
        clip.encode_text(tokenizer(prompts[i : min(i + 128, args.limit)]))  # open_clip: all 77 positions
    naive = (time.perf_counter() - start) * len(prompts) / args.limit
    print(f"naive 77-token encoding (extrapolated from {args.limit} prompts): {naive:.1f} s")

    encoder = clip_text_encoder(clip, clip_model_name=args.model, custom_clip=False)  # what the predictor uses
    built = {}
    for mode, fast in (("exact fp32", False), ("fast bf16", True)):
        start = time.perf_counter()
        built[mode] = build_text_classifier(vocab, encoder.for_precision(fast)[0], progress=False).embeddings
        print(f"vocabseg {mode} (each shared token prefix run once): {time.perf_counter() - start:.1f} s")
    cosine = (built["exact fp32"] * built["fast bf16"]).sum(-1)  # rows are unit-norm
    print(f"fast vs exact class embeddings: cosine min {cosine.min():.6f}, mean {cosine.mean():.6f}")


if __name__ == "__main__":
    main()
