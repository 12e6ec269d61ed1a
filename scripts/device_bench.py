"""GPU figures for the README: images/s and peak memory of FC-CLIP ConvNeXt-L, exact fp32 vs fast
bf16, at batch 1 and 8, plus a check that the fused Triton deformable attention agrees with the
grid_sample path on the real pixel-decoder shapes.

Random weights (speed does not depend on their values; nothing is downloaded). CI never runs
this; on a machine without a GPU, ``--dry-run`` runs the same code on the CPU with the tiny model
at a small size, to check the script itself.

Usage:
    python scripts/device_bench.py                      # cuda, convnext_large, 800x1200, batch 1 and 8
    python scripts/device_bench.py --dry-run            # cpu, tiny model, 64x96, batch 1 and 2
"""
from __future__ import annotations

import argparse
import time

import torch

from vocabseg import bench
from vocabseg.models import get_family
from vocabseg.predictor import Predictor
from vocabseg.testing import synthetic_photo, tiny_config


def build_predictor(model: str, device: str, dry_run: bool) -> Predictor:
    if dry_run:
        family = get_family("fcclip")
        config = tiny_config()
        settings = family.default_settings(config).override({"min_size": 64, "max_size": 96})
        return Predictor(family.build(config), config, settings, family=family, device=device)
    return bench.random_weights_predictor(model, device)


def check_triton_kernel(device: torch.device, levels: list[tuple[int, int]]) -> str:
    """Max difference of the Triton kernel from grid_sample on the pixel decoder's shapes."""
    from vocabseg.layers.ms_deform_attn import _triton_kernel, grid_sample_deformable_attention

    kernel = _triton_kernel()
    if device.type != "cuda" or kernel is None:
        return "triton kernel: not used on this device (grid_sample path)"
    g = torch.Generator(device=device).manual_seed(0)
    total = sum(h * w for h, w in levels)
    value = torch.randn(1, total, 8, 32, device=device, generator=g)
    locations = torch.rand(1, total, 8, len(levels), 4, 2, device=device, generator=g)
    weights = torch.rand(1, total, 8, len(levels) * 4, device=device, generator=g).softmax(-1).view(
        1, total, 8, len(levels), 4)
    timings = []
    for fn in (kernel, grid_sample_deformable_attention):
        fn(value, levels, locations, weights)
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn(value, levels, locations, weights)
        torch.cuda.synchronize(device)
        timings.append((time.perf_counter() - start, out))
    (fused_s, fused), (grid_s, grid) = timings
    return (f"triton kernel: max |diff| {float((fused - grid).abs().max()):.2e} vs grid_sample; "
            f"{1000 * fused_s:.2f} ms vs {1000 * grid_s:.2f} ms for {total} queries")


def compiled_rows(predictor: Predictor, image, batches: list[int], repeats: int) -> list[tuple[str, ...]]:
    """Fast mode with the backbone compiled; the first pass (compilation) is timed on its own."""
    predictor.model.backbone = torch.compile(predictor.model.backbone, dynamic=False)
    start = time.perf_counter()
    bench.run_mode(predictor, [image], ("semantic",), mode="fast", repeats=1, warmup=0)
    print(f"torch.compile of the backbone: first pass {time.perf_counter() - start:.1f} s")
    rows = []
    for batch in batches:
        r = bench.run_mode(predictor, [image] * batch, ("semantic",), mode="fast", repeats=repeats)
        rows.append((str(batch), "fast+compile", f"{r.images_per_s:.2f}", f"{r.total:.3f}",
                     f"{r.peak_bytes / 2 ** 30:.2f}", "-", "-"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcclip_convnext_large_coco")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="800x1200", help="HxW of the test image")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--vocab", default="ade20k_150")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="cpu, tiny model, 64x96, batches 1,2, four classes")
    parser.add_argument("--compile", action="store_true",
                        help="also time the backbone under torch.compile (fast mode; compile time reported apart)")
    args = parser.parse_args()
    if args.dry_run:
        args.device, args.size, args.batches, args.repeats = "cpu", "64x96", "1,2", 1
        args.vocab = "car; person; road [stuff]; sky [stuff]"
    height, width = (int(v) for v in args.size.split("x"))
    predictor = build_predictor(args.model, args.device, args.dry_run)
    start = time.perf_counter()
    predictor.set_vocabulary(args.vocab, progress=False)
    print(f"{args.model if not args.dry_run else 'tiny fcclip'} on {predictor.device} "
          f"({torch.cuda.get_device_name(predictor.device) if predictor.device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}; text classifier {time.perf_counter() - start:.1f} s")
    image = synthetic_photo(height, width)
    rows = [("batch", "mode", "images/s", "s/batch", "peak GiB", "mask_cls rel.err", "semantic agreement")]
    for batch in (int(b) for b in args.batches.split(",")):
        results = {mode: bench.run_mode(predictor, [image] * batch, ("semantic",), mode=mode, repeats=args.repeats)
                   for mode in ("exact", "fast")}
        dev = bench.deviation(results["fast"], results["exact"])
        for mode, r in results.items():
            fast = mode == "fast"
            rows.append((str(batch), mode, f"{r.images_per_s:.2f}", f"{r.total:.3f}", f"{r.peak_bytes / 2 ** 30:.2f}",
                         f"{dev.relative_error.get('mask_cls', 0.0):.1e}" if fast else "-",
                         f"{100 * (dev.semantic_agreement or 0):.3f} %" if fast else "-"))
    if args.compile:
        rows += compiled_rows(predictor, image, [int(b) for b in args.batches.split(",")], args.repeats)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
    levels = [(height // s, width // s) for s in (32, 16, 8)]  # the deformable encoder's levels
    print(check_triton_kernel(predictor.device, levels))


if __name__ == "__main__":
    main()
