"""TrainConfig -> Trainer: the one place that reads a training preset."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch

from vocabseg import distributed as dist
from vocabseg.errors import ConfigError
from vocabseg.models import ModelFamily, ModelVariant, SegmentationModel, Settings, get_family
from vocabseg.text import (
    TextClassifier,
    TextEmbeddingCache,
    Vocabulary,
    get_vocabulary,
    list_vocabularies,
    resolve_vocabulary,
)
from vocabseg.text.vocabulary import join_synonyms
from vocabseg.text.zero_shot import seen_subset
from vocabseg.train.cascade_clip.data import DenseCollate, DenseTrainDataset, resolve_split
from vocabseg.train.cascade_clip.transforms import MMSegAugment
from vocabseg.train.checkpoint import load_backbone_weights, load_init_weights
from vocabseg.train.config import DataSection, SolverSection, TrainConfig
from vocabseg.train.data import Batch, TrainDataset
from vocabseg.train.evaluation import benchmark_eval_fn
from vocabseg.train.loop import EvalFn, LoopSettings, Trainer
from vocabseg.train.optim import build_optimizer, build_scheduler, scale_schedule
from vocabseg.train.rng import seed_everything
from vocabseg.train.sources import (
    FileSource,
    SyntheticShapes,
    files_from_record,
    has_targets,
    read_label_folder,
    read_panoptic_folder,
)
from vocabseg.zoo import get_variant

DATA_FORMATS = {
    "registered": ("name", "root"),
    "panoptic_json": ("images", "panoptic_dir", "panoptic_json"),
    "semantic": ("images", "labels", "vocabulary"),
    "synthetic": (),
}


class Architecture(NamedTuple):
    family: ModelFamily
    config: Any  # the family's config dataclass
    settings: Settings
    variant: ModelVariant | None


def resolve_architecture(config: TrainConfig) -> Architecture:
    """The zoo variant's (else the family's default) config and settings, ``model.arch`` fields on top."""
    section = config.model
    try:
        variant = get_variant(section.variant) if section.variant else None
        family = get_family(variant.family if variant else section.family)
        if variant:
            base = variant.config.to_dict()
        else:
            base = (family.tiny_config() if section.tiny else family.config_from_dict({})).to_dict()
        model_config = family.config_from_dict({**base, **section.arch})
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
    settings = variant.settings if variant else family.default_settings(model_config)
    return Architecture(family, model_config, settings, variant)


def resolve_accum_steps(solver: SolverSection, world_size: int) -> int:
    """Accumulation steps making ``batch_per_gpu x world_size x accum = batch_size``."""
    per_pass = solver.batch_per_gpu * world_size
    accum = solver.accum_steps if solver.accum_steps is not None else solver.batch_size // per_pass
    if accum < 1 or per_pass * accum != solver.batch_size:
        raise ConfigError(f"solver.batch_size={solver.batch_size} is not "
                          f"solver.batch_per_gpu ({solver.batch_per_gpu}) x {world_size} process(es) x "
                          f"accumulation steps ({solver.accum_steps or 'auto'}); "
                          "change solver.batch_per_gpu or solver.accum_steps")
    return accum


def build_source(data: DataSection, *, image_size: int, seed: int):
    """The examples and their vocabulary for ``data.format``."""
    if data.format not in DATA_FORMATS:
        raise ConfigError(f"data.format={data.format!r}; use one of {', '.join(DATA_FORMATS)}")
    missing = [f"data.{k}" for k in DATA_FORMATS[data.format] if getattr(data, k) in (None, "")]
    if missing:
        raise ConfigError(f"data.format={data.format} needs {', '.join(missing)}; "
                          "set it in the preset or as an override")
    if data.format == "synthetic":
        if data.num_images < 1:
            raise ConfigError(f"data.num_images={data.num_images}; the synthetic training set needs at least 1 image")
        return SyntheticShapes(num_images=data.num_images, size=image_size, seed=seed), SyntheticShapes.vocabulary
    if data.format == "registered":
        from vocabseg.data.registry import get_dataset

        task = "panoptic" if "panoptic" in _tasks(data.name) else "semantic"
        dataset = get_dataset(data.name, data.root, tasks={task})
        files, vocabulary = [files_from_record(r) for r in dataset], dataset.get_vocabulary()
    elif data.format == "panoptic_json":
        assert data.images and data.panoptic_dir and data.panoptic_json  # set: checked against DATA_FORMATS above
        given = resolve_vocabulary(data.vocabulary) if data.vocabulary else None
        files, vocabulary = read_panoptic_folder(images=Path(data.images), panoptic_dir=Path(data.panoptic_dir),
                                                 panoptic_json=Path(data.panoptic_json), vocabulary=given)
    else:
        assert data.images and data.labels and data.vocabulary  # set: checked against DATA_FORMATS above
        files = read_label_folder(images=Path(data.images), labels=Path(data.labels), ignore_label=data.ignore_label)
        vocabulary = resolve_vocabulary(data.vocabulary)
    # As the official loader (FILTER_EMPTY_ANNOTATIONS): images with only crowd segments are skipped.
    return FileSource([f for f in files if has_targets(f)], num_classes=len(vocabulary),
                      is_thing=[c.is_thing for c in vocabulary.classes]), vocabulary


def _tasks(split: str) -> tuple[str, ...]:
    from vocabseg.data.registry import get_spec

    return get_spec(split).tasks


def vocabulary_spec(vocabulary: Vocabulary) -> str:
    """What ``resolve_vocabulary`` turns back into ``vocabulary``: a built-in name, or inline text."""
    if vocabulary.name in list_vocabularies() and get_vocabulary(vocabulary.name).classes == vocabulary.classes:
        return vocabulary.name
    text = "; ".join(", ".join(c.names) + ("" if c.is_thing else " [stuff]") for c in vocabulary.classes)
    return text if ";" in text else text + ";"  # one bare word could read as a built-in name: keep it a class


def text_classifier(model: torch.nn.Module, vocabulary: Vocabulary, *, cache_dir: str | None) -> TextClassifier:
    """The vocabulary's embeddings by the frozen text tower; rank 0 fills the cache, the others read it."""
    encoder = cast(SegmentationModel, model).text_encoder()
    cache = TextEmbeddingCache(cache_dir)
    if not dist.is_main_process():
        dist.barrier()
    prompted = join_synonyms(vocabulary) if encoder.join_synonyms else vocabulary
    text = cache.get_or_build(prompted, encoder.encode, encoder.encoder_id, templates=encoder.templates)
    if dist.is_main_process():
        dist.barrier()
    return TextClassifier.build(text, vocabulary)


class TrainData(NamedTuple):
    dataset: TrainDataset | DenseTrainDataset
    head_classes: tuple[int, ...]  # data-vocabulary indices of the classes the model predicts, in channel order
    head_vocabulary: Vocabulary  # those classes
    seen_vocabulary: Vocabulary  # the classes trained with their labels (the checkpoint's training vocabulary)
    collate: Callable[[list], Batch] | None  # None: the Trainer's default (LSJ examples)


def build_train_data(config: TrainConfig, source, vocabulary: Vocabulary, model: torch.nn.Module,
                     settings: Settings) -> TrainData:
    """LSJ panoptic examples (FC-CLIP), or mmseg-augmented semantic ones with a zero-shot split (Cascade-CLIP)."""
    inp, zero_shot = config.input, config.zero_shot
    if inp.augment == "lsj":
        if zero_shot.seen_classes is not None or zero_shot.unseen_classes is not None or zero_shot.transductive:
            raise ConfigError("zero_shot training needs semantic targets: set input.augment=mmseg")
        dataset = TrainDataset(source, image_size=inp.image_size, min_scale=inp.min_scale, max_scale=inp.max_scale,
                               flip=inp.flip)
        return TrainData(dataset, tuple(range(len(vocabulary))), vocabulary, vocabulary, None)
    if inp.augment != "mmseg":
        raise ConfigError(f"input.augment={inp.augment!r}; use lsj or mmseg")
    scale = _positive_ints(inp.resize_scale, "input.resize_scale", "[2048, 512]")
    if len(scale) != 2:
        raise ConfigError(f"input.resize_scale={inp.resize_scale!r} must be [long, short], e.g. [2048, 512]")
    short_sides = _positive_ints(inp.short_side_choices, "input.short_side_choices", "[320, 384, 448]")
    split = resolve_split(vocabulary.class_names, seen=zero_shot.seen_classes, unseen=zero_shot.unseen_classes,
                          transductive=zero_shot.transductive)
    augment = MMSegAugment(crop_size=inp.image_size, scale=(scale[0], scale[1]),
                           ratio_range=(inp.min_scale, inp.max_scale), cat_max_ratio=inp.cat_max_ratio,
                           flip_prob=0.5 if inp.flip else 0.0, photometric=inp.photometric,
                           short_side_choices=short_sides)
    seen = seen_subset(vocabulary, split.unseen) if split.unseen else vocabulary
    head = vocabulary if split.transductive else seen
    policy = cast(SegmentationModel, model).input_policy(settings)
    collate = DenseCollate(policy.pixel_mean, policy.pixel_std, inp.image_size)
    return TrainData(DenseTrainDataset(source, augment=augment, split=split), split.head_classes, head, seen, collate)


def _positive_ints(values: list, field: str, example: str) -> tuple[int, ...]:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ConfigError(f"{field}={values!r} must be a list of positive integers (pixels), e.g. {example}")
    return tuple(values)


def training_classifier(model: torch.nn.Module, data: TrainData, vocabulary: Vocabulary, *, cache_dir: str | None,
                        embeddings_file: str | None) -> TextClassifier:
    """The head's classes by the frozen text tower, or their rows of a ``.npy`` of the whole data vocabulary."""
    if embeddings_file is None:
        return text_classifier(model, data.head_vocabulary, cache_dir=cache_dir)
    encoder = cast(SegmentationModel, model).text_encoder()
    width = int(encoder.encode(["a photo of a cat."]).shape[-1])
    every = TextClassifier.from_file(embeddings_file, vocabulary, None, width=width)  # rows in vocabulary order
    rows = torch.tensor(data.head_classes)
    return TextClassifier(embeddings=every.embeddings[rows], synonym_index=torch.arange(len(rows))[:, None],
                          seen=every.seen[rows], class_names=tuple(data.head_vocabulary.class_names))


def loop_settings(config: TrainConfig, *, accum_steps: int, max_iter: int) -> LoopSettings:
    s = config.solver
    return LoopSettings(max_iter=max_iter, batch_per_gpu=s.batch_per_gpu, accum_steps=accum_steps, amp=s.amp,
                        clip_grad=s.clip_grad, checkpoint_period=s.checkpoint_period, eval_period=s.eval_period,
                        best_metric=s.best_metric, log_period=s.log_period, seed=s.seed,
                        num_workers=config.data.num_workers)


def build_trainer(config: TrainConfig, *, device: torch.device, init: str | None = None, eval_fn: EvalFn | None = None,
                  keep_history: bool = False) -> Trainer:
    """Model (pretrained frozen CLIP, optional starting weights), data, losses, optimizer, schedule."""
    arch = resolve_architecture(config)
    accum = resolve_accum_steps(config.solver, dist.get_world_size())
    source, vocabulary = build_source(config.data, image_size=config.input.image_size, seed=config.solver.seed)
    seed_everything(config.solver.seed)  # same initial weights on every rank
    model = arch.family.build(arch.config)
    if config.model.load_clip:
        arch.family.load_clip_weights(model, arch.config, config.model.clip_weights)
    if config.model.backbone_init:  # as the official MODEL.WEIGHTS of a backbone release
        load_backbone_weights(model, config.model.backbone_init)
    init = init or config.model.init  # as the official --load-from: weights only, fresh optimizer and schedule
    if init:
        load_init_weights(model, init, variant=arch.variant)
    seed_everything(config.solver.seed + dist.get_rank())
    model.to(device)
    solver, loss = config.solver, config.loss
    criterion = arch.family.build_criterion(arch.config, loss)
    optimizer = build_optimizer(model, lr=solver.lr, weight_decay=solver.weight_decay,
                                weight_decay_norm=solver.weight_decay_norm,
                                weight_decay_embed=solver.weight_decay_embed,
                                backbone_multiplier=solver.backbone_multiplier,
                                no_decay_names=tuple(solver.no_decay_names))
    max_iter, steps = scale_schedule(solver.max_iter, solver.steps, solver.schedule_scale)
    scheduler = build_scheduler(optimizer, steps=steps, gamma=solver.gamma, warmup_iters=solver.warmup_iters,
                                warmup_factor=solver.warmup_factor, schedule=solver.schedule, max_iter=max_iter,
                                poly_power=solver.poly_power, min_lr=solver.min_lr)
    data = build_train_data(config, source, vocabulary, model, arch.settings)
    train_vocabulary = vocabulary_spec(data.seen_vocabulary)
    if eval_fn is None:
        eval_fn = benchmark_eval_fn(config.eval, family=arch.family, model_config=arch.config, settings=arch.settings,
                                    train_vocabulary=train_vocabulary, device=device,
                                    output_dir=config.output, text_cache=config.text_cache)
    return Trainer(model=model, family=arch.family, model_config=arch.config, model_settings=arch.settings,
                   criterion=criterion, text=training_classifier(model, data, vocabulary, cache_dir=config.text_cache,
                                                                 embeddings_file=config.text_embeddings),
                   train_vocabulary=train_vocabulary, dataset=data.dataset, optimizer=optimizer,
                   scheduler=scheduler, settings=loop_settings(config, accum_steps=accum, max_iter=max_iter),
                   device=device, output_dir=config.output, eval_fn=eval_fn, run_config=config.to_dict(),
                   keep_history=keep_history, collate=data.collate)

