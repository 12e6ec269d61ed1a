"""Writing predictions to disk: overlay PNG, COCO panoptic PNG + JSON, label PNG + its class list, COCO RLE JSON.

Every file is written through ``vocabseg.fileio.atomic_write`` (a temporary name, then a
rename), so an interrupted run never leaves a half-written file under a final name.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from scipy import ndimage

from vocabseg.data.io import id_to_rgb
from vocabseg.fileio import atomic_write
from vocabseg.fonts import Font, label_font
from vocabseg.predictor import Prediction
from vocabseg.text import Vocabulary


def save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda p: Image.fromarray(array).save(p, format="PNG"))


def save_json(path: Path, data) -> None:
    def write(p):
        with open(p, "w", encoding="utf-8") as f:
            json.dump(data, f)

    atomic_write(path, write)


def class_color(vocab: Vocabulary, index: int) -> tuple[int, int, int]:
    """The vocabulary's colour, else a stable colour derived from the class name."""
    color = vocab.classes[index].color
    if color is not None:
        r, g, b = color
        return r, g, b
    h = zlib.crc32(vocab.classes[index].name.encode())
    return (h & 255, (h >> 8) & 255, (h >> 16) & 255)


def overlay(image: np.ndarray, pred: Prediction, vocab: Vocabulary, alpha: float = 0.55) -> np.ndarray:
    """The image blended with class colours, for people to read.

    Each region large enough gets its class name (and score, when known) in outlined text at
    its most interior point; a legend in the top-right corner lists the classes found with
    their colours and best scores; an image where nothing was found carries a note saying so.
    """
    region_map, regions = _region_map(pred)  # [H, W] region index (-1: none), one Region each
    colors = np.array([class_color(vocab, r.class_index) for r in regions], np.uint8).reshape(-1, 3)
    blended = _blend(image, region_map, colors, alpha)
    _draw_borders(blended, region_map, colors, width=max(1, round(min(image.shape[:2]) / 300)))
    pil = Image.fromarray(blended)
    size = max(13, round(0.03 * min(image.shape[:2])))  # text height: 3% of the short side
    if regions:
        legend = _draw_legend(pil, regions, vocab, size)
        _draw_labels(pil, region_map, regions, vocab, size, avoid=legend)
    else:
        prefix = "no segments for: "
        font, room = label_font(size), pil.width - 2 * size
        _draw_panel(pil, [(None, prefix + _vocab_summary(vocab, font, room - font.getlength(prefix)))], size,
                    corner="left")
    return np.asarray(pil)


Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels


@dataclass
class Region:
    """One coloured region of an overlay."""

    class_index: int
    score: float | None  # None: the task gives no score (semantic)
    area: int = 0  # pixels in the region map (after later regions drew over it)


def _region_map(pred: Prediction) -> tuple[np.ndarray, list[Region]]:
    """[H, W] int32 map of region indices (-1: no region) and the regions, without a mask per region kept."""
    region_map = np.full((pred.height, pred.width), -1, np.int32)
    regions: list[Region] = []
    if pred.panoptic is not None:
        for s in pred.segments:
            region_map[pred.panoptic == s.id] = len(regions)
            regions.append(Region(s.category, s.score))
    elif pred.semantic is not None:
        classes = np.unique(pred.semantic)
        classes = classes[classes >= 0]  # -1: unassigned
        lookup = np.full(int(classes.max(initial=0)) + 2, -1, np.int32)  # class + 1 -> region index
        lookup[classes + 1] = np.arange(len(classes))
        region_map = lookup[pred.semantic + 1]
        regions = [Region(int(c), None) for c in classes]
    elif (instances := _instances(pred)) is not None:
        masks, scores, classes = instances
        for i in np.argsort(scores, kind="stable"):  # the best instance ends on top where they overlap
            if scores[i] >= 0.5:
                region_map[masks[i]] = len(regions)
                regions.append(Region(int(classes[i]), float(scores[i])))
    areas = np.bincount(region_map.ravel() + 1, minlength=len(regions) + 1)[1:]
    for region, area in zip(regions, areas):
        region.area = int(area)
    return region_map, regions


def _blend(image: np.ndarray, region_map: np.ndarray, colors: np.ndarray, alpha: float) -> np.ndarray:
    """[H, W, 3] uint8: each pixel of a region mixed with its colour, by row blocks in integer arithmetic.

    One pass with a colour lookup keeps a 12 MP photo to a few small temporaries (no float copy of
    the image, none per region).
    """
    out = np.array(image, np.uint8)
    weight = round(alpha * 256)
    for top in range(0, out.shape[0], 256):
        block, rows = out[top:top + 256], region_map[top:top + 256]
        inside = rows >= 0
        mixed = block[inside].astype(np.uint16) * (256 - weight) + colors[rows[inside]].astype(np.uint16) * weight
        block[inside] = (mixed + 128) >> 8  # at most 255 * 256 + 128: fits uint16
    return out


def _draw_borders(out: np.ndarray, region_map: np.ndarray, colors: np.ndarray, width: int) -> None:
    """Paints the pixels of each region within ``width`` of its border in its unblended colour."""
    edge = np.zeros(region_map.shape, bool)  # [H, W] True where a neighbour belongs elsewhere
    edge[1:] |= region_map[1:] != region_map[:-1]
    edge[:-1] |= region_map[:-1] != region_map[1:]
    edge[:, 1:] |= region_map[:, 1:] != region_map[:, :-1]
    edge[:, :-1] |= region_map[:, :-1] != region_map[:, 1:]
    if width > 1:
        edge = ndimage.binary_dilation(edge, iterations=width - 1)
    edge &= region_map >= 0
    out[edge] = colors[region_map[edge]]


def _draw_labels(pil: Image.Image, region_map: np.ndarray, regions: list[Region], vocab: Vocabulary,
                 size: int, avoid: Box) -> None:
    """Class name and score of each region big enough for it, at the region's point farthest from its border.

    The median pixel can fall outside a non-convex region (a ring, an L); the centre of the largest
    inscribed disc cannot. Labels go largest region first; one that would cover a label drawn or the
    ``avoid`` box (the legend) moves to another part of its region, or is left out.
    """
    font, draw = label_font(size), ImageDraw.Draw(pil)
    stroke = max(2, round(size / 7))
    step = max(1, min(region_map.shape) // 256)  # distance transforms on a map ~256 px on its short side
    small = region_map[step // 2::step, step // 2::step] + 1  # 0: no region
    boxes = ndimage.find_objects(small, max_label=len(regions))  # region i -> slices of its bounding box
    drawn = [avoid]
    for i in sorted(range(len(regions)), key=lambda i: -regions[i].area):
        if regions[i].area < size * size or boxes[i] is None:
            continue
        rows, cols = boxes[i]
        inside = small[rows, cols] == i + 1  # [h, w] the region in its bounding box of the small map
        text = _label_text(vocab, regions[i])
        for _ in range(4):  # a label under one drawn: try again in the rest of the region
            y, x = _interior_point(inside)
            center = ((cols.start + x) * step + step // 2, (rows.start + y) * step + step // 2)
            box = _inside(draw.textbbox(center, text, font=font, anchor="mm", stroke_width=stroke), pil.size)
            hit = next((b for b in drawn if box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]),
                       None)
            if hit is None:
                drawn.append(box)
                draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text, font=font, anchor="mm",
                          fill=(255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0))
                break
            half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2  # no centre there leaves ``hit`` free
            top, left = _small_index(hit[1] - half_h, step, rows.start), _small_index(hit[0] - half_w, step, cols.start)
            bottom, right = _small_index(hit[3] + half_h, step, rows.start), _small_index(hit[2] + half_w, step,
                                                                                          cols.start)
            inside[top:bottom + 1, left:right + 1] = False
            if not inside.any():
                break


def _small_index(pixel: float, step: int, start: int) -> int:
    """Index in a crop from ``start`` of a map subsampled by ``step`` of an image ``pixel`` (0 if before it)."""
    return max(0, int(pixel // step) - start)


def _interior_point(mask: np.ndarray) -> tuple[int, int]:
    """(row, col) of a point well inside ``mask``: of its points at least 80% as far from the border
    as the farthest, the one nearest their mean (so a long strip is labelled in its middle, not at an end)."""
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # the image border counts as border
    ys, xs = np.nonzero(distance >= 0.8 * distance.max())
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(ys[k]), int(xs[k])


def _inside(box: Box, image_size: tuple[int, int]) -> Box:
    """``box`` shifted to lie inside the image where it fits."""
    dx = max(0.0, -box[0]) - max(0.0, box[2] - image_size[0])
    dy = max(0.0, -box[1]) - max(0.0, box[3] - image_size[1])
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def _label_text(vocab: Vocabulary, region: Region) -> str:
    name = vocab.classes[region.class_index].name
    return name if region.score is None else f"{name} {region.score:.2f}"


def _draw_legend(pil: Image.Image, regions: list[Region], vocab: Vocabulary, size: int) -> Box:
    """Top-right panel: a colour swatch, the class name and its best score per class found, largest first."""
    area: dict[int, int] = {}
    best: dict[int, float] = {}
    for r in regions:
        if r.area:
            area[r.class_index] = area.get(r.class_index, 0) + r.area
            if r.score is not None:
                best[r.class_index] = max(best.get(r.class_index, r.score), r.score)
    rows: list[tuple[tuple[int, int, int] | None, str]] = [
        (class_color(vocab, c), _label_text(vocab, Region(c, best.get(c))))
        for c in sorted(area, key=lambda c: -area[c])]
    fit = max(1, (pil.height - size) // _line_height(size))
    if len(rows) > fit:
        rows = rows[:fit - 1] + [(None, f"+{len(rows) - fit + 1} more")]
    return _draw_panel(pil, rows, size, corner="right")


def _line_height(size: int) -> int:
    return round(size * 1.5)


def _draw_panel(pil: Image.Image, rows: list[tuple[tuple[int, int, int] | None, str]], size: int,
                corner: str) -> Box:
    """Rows of (swatch colour or None, text) on a darkened box in the top ``corner`` ("left" or "right");
    returns the box."""
    font, draw = label_font(size), ImageDraw.Draw(pil)
    pad, line = size // 2, _line_height(size)
    indent = [size + pad if color is not None else 0 for color, _ in rows]
    width = min(pil.width, round(max(i + font.getlength(t) for i, (_, t) in zip(indent, rows))) + 2 * pad)
    height = min(pil.height, len(rows) * line + 2 * pad - (line - size))
    left = pad if corner == "left" else max(0, pil.width - width - pad)
    box = (left, min(pad, pil.height - height), left + width, min(pad, pil.height - height) + height)
    pil.paste(Image.blend(pil.crop(box), Image.new("RGB", (width, height)), 0.65), box[:2])
    for k, ((color, text), dx) in enumerate(zip(rows, indent)):
        x, y = box[0] + pad, box[1] + pad + k * line
        if color is not None:
            draw.rectangle((x, y, x + size - 1, y + size - 1), fill=color, outline=(255, 255, 255))
        draw.text((x + dx, y + size / 2), text, font=font, anchor="lm", fill=(255, 255, 255))
    return box


def _vocab_summary(vocab: Vocabulary, font: Font, width: float) -> str:
    """The class names, as many as fit in ``width`` pixels, then how many more."""
    names = vocab.class_names
    for n in range(len(names), 0, -1):
        text = ", ".join(names[:n]) + (f", +{len(names) - n} more" if n < len(names) else "")
        if font.getlength(text) <= width:
            return text
    return f"{len(names)} classes"


def _instances(pred: Prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The instance masks, scores and classes, which the predictor fills together; None if not predicted."""
    if pred.instance_masks is None:
        return None
    if pred.instance_scores is None or pred.instance_classes is None:
        raise ValueError("the prediction has instance masks but no instance scores or classes")
    return pred.instance_masks, pred.instance_scores, pred.instance_classes


def categories_json(vocab: Vocabulary) -> list[dict]:
    return [{"id": i, "name": c.name, "isthing": int(c.is_thing), "color": list(class_color(vocab, i))}
            for i, c in enumerate(vocab.classes)]


def write_prediction(output_dir: Path, stem: str, image: np.ndarray, pred: Prediction, vocab: Vocabulary) -> list[Path]:
    """Writes every output of one image; returns the paths written (overlay last)."""
    written = []
    if pred.panoptic is not None:
        png = output_dir / "panoptic" / f"{stem}.png"
        save_png(png, id_to_rgb(pred.panoptic))
        segments = [{"id": s.id, "category_id": s.category, "iscrowd": 0, "isthing": int(s.is_thing),
                     "area": s.area, "score": s.score, "class_name": s.class_name} for s in pred.segments]
        save_json(output_dir / "panoptic" / f"{stem}.json",
                  {"file_name": png.name, "image_id": stem, "segments_info": segments,
                   "categories": categories_json(vocab)})
        written += [png, output_dir / "panoptic" / f"{stem}.json"]
    if pred.semantic is not None:
        dtype = np.uint8 if len(vocab) <= 255 else np.uint16  # the largest value marks unassigned pixels
        unassigned = int(np.iinfo(dtype).max)
        path = output_dir / "semantic" / f"{stem}.png"
        save_png(path, np.where(pred.semantic < 0, unassigned, pred.semantic).astype(dtype))
        classes = output_dir / "semantic" / f"{stem}.json"  # what each pixel value means, beside the labels
        save_json(classes, {"file_name": path.name, "unassigned": unassigned, "categories": categories_json(vocab)})
        written += [path, classes]
    if pred.instance_masks is not None:
        path = output_dir / "instance" / f"{stem}.json"
        save_json(path, instance_results(stem, pred))
        written.append(path)
    path = output_dir / f"{stem}_overlay.png"
    save_png(path, overlay(image, pred, vocab))
    return written + [path]


def instance_results(image_id, pred: Prediction) -> list[dict]:
    """COCO results format: one dict per instance with an RLE mask."""
    instances = _instances(pred)
    if instances is None:
        raise ValueError("the prediction has no instances; predict with the instance task")
    results = []
    for mask, score, cls in zip(*instances):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append({"image_id": image_id, "category_id": int(cls), "segmentation": rle, "score": float(score),
                        "class_name": pred.class_names[int(cls)]})
    return results
