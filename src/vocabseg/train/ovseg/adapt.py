"""Stages (c) and (d): contrastive CLIP training on mined (masked crop, noun) pairs.

The loss is CLIP's symmetric InfoNCE over the *whole effective batch* (all micro-batches of all
ranks), the nouns encoded by the locked text tower as plain strings (as the official training
tokenises its csv captions). Equivalence rules:

- Ranks gather each other's features; a rank's gradient flows through its own. DDP averages
  gradients, so the objective each rank back-propagates is ``W x L(own features live) -
  (W - 1) x L(all features frozen)``: the image tower gets the full gradient of L, the scale
  (identical on every rank) exactly once.
- With accumulation the batch's features are first computed without gradient, the loss's
  gradient with respect to them is taken once, then each micro-batch is re-encoded and
  back-propagates ``<features, that gradient>`` (gradient caching): the same gradient as one
  pass over the effective batch, at the cost of a second forward pass.

So 2 processes x B equal 1 process x 2 accumulation steps x B, and a resumed run repeats the
losses of an uninterrupted one (augmentations and order come from the stream position).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from vocabseg import distributed as dist
from vocabseg.clip.text import encode_tokens
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.fileio import read_checkpoint, save_torch
from vocabseg.train.checkpoint import ResumeRule, resume_changes
from vocabseg.train.data import StreamSampler, build_loader
from vocabseg.train.loop import AMP_DTYPES, wrap_ddp
from vocabseg.train.ovseg.clip_model import (
    RegionEncoder,
    build_stage_clip,
    check_stage,
    param_groups,
    save_clip,
)
from vocabseg.train.ovseg.config import StageConfig, stage_settings
from vocabseg.train.ovseg.mining.pairs import read_pairs
from vocabseg.train.ovseg.pairs import PairBatch, PairDataset, collate_pairs
from vocabseg.train.rng import derive_seed, rng_state, seed_everything, set_rng_state

STATE_FORMAT = "vocabseg-clip-train-v1"
MAX_LOGIT_SCALE = math.log(100)  # official clamp after every step
logger = logging.getLogger(__name__)

# What a resume of a CLIP stage may change (as vocabseg train's RESUME_MAY_CHANGE): where things are,
# how often the loop reports, data-loading workers, and a longer solver.max_iter (CLIP_SCHEDULE_RULE).
CLIP_STAGE_RESUME = ResumeRule(
    ("output", "device", "data.root", "data.num_workers", "solver.log_period", "solver.checkpoint_period",
     "solver.max_iter"), ("solver.max_iter",), "periods, worker counts, locations and a longer solver.max_iter")
CLIP_SCHEDULE_RULE = ("a longer solver.max_iter continues the schedule: the cosine decay is recomputed over the "
                      "new max_iter from the resumed iteration")


def contrastive_loss(images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of unit-norm features [N, D] paired row by row; ``scale`` multiplies the cosines."""
    logits = scale * images @ texts.T  # [N, N]
    labels = torch.arange(len(images), device=images.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def cosine_factor(iteration: int, *, warmup: int, total: int) -> float:
    """Official schedule: ``(t + 1) / warmup`` during warmup, then cosine from 1 to 0 at ``total``."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (iteration - warmup) / max(total - warmup, 1)))


def _gather_rows(local: torch.Tensor) -> torch.Tensor:
    """[W x N, D] rows of every rank in rank order; this rank's rows keep their gradient."""
    parts = dist.all_gather_tensor(local)
    parts[dist.get_rank()] = local
    return torch.cat(parts)


class ClipTrainer:
    """Trains the stage's CLIP parameters on a pair folder; checkpoints ``last.pth``, ends with ``clip_final.pth``."""

    def __init__(self, config: StageConfig, *, device: torch.device, keep_history: bool = False):
        check_stage(config.stage)
        self.config, self.device, self.solver = config, device, config.solver
        if self.solver.amp not in AMP_DTYPES:
            raise ConfigError(f"solver.amp must be one of {', '.join(AMP_DTYPES)}, got {self.solver.amp!r}")
        self.accum = _accum_steps(config)
        pairs = read_pairs(config.data.root)
        seed_everything(self.solver.seed)  # same initial weights (mask embedding) on every rank
        self.clip: Any = build_stage_clip(config.clip, stage=config.stage).to(device)
        depth = config.clip.mask_prompt_depth if config.stage == "prompt" else 0
        self.encoder = RegionEncoder(self.clip, mask_prompt_depth=depth)
        self.ddp = wrap_ddp(self.encoder, device)
        self.tokenizer = open_clip.tokenize if config.clip.tiny else open_clip.get_tokenizer(config.clip.model)
        size = int(self.clip.visual.image_size[0])
        self.dataset = PairDataset(pairs, config.data.root, size=size,
                                   scale=(config.data.min_scale, config.data.max_scale))
        self.optimizer = torch.optim.AdamW(param_groups(self.clip, self.solver), lr=self.solver.lr,
                                           betas=(self.solver.beta1, self.solver.beta2), eps=self.solver.eps)
        epochs_iters = math.ceil(self.solver.epochs * len(pairs) / self.solver.batch_size)
        self.max_iter = self.solver.max_iter or max(1, epochs_iters)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda t: cosine_factor(t, warmup=self.solver.warmup_iters, total=self.max_iter))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.solver.amp == "fp16")
        self.trainable = [p for p in self.clip.parameters() if p.requires_grad]
        self.iteration, self.position = 0, 0
        self.output = Path(config.output)
        self.history: list[float] | None = [] if keep_history else None
        self.resume_changes: list[dict[str, Any]] = []  # settings a resume changed: [{"key", "old", "new"}]
        seed_everything(self.solver.seed + dist.get_rank())

    @property
    def global_batch(self) -> int:
        return self.solver.batch_per_gpu * dist.get_world_size() * self.accum

    # ---- the loop ---------------------------------------------------------------------------------
    def train(self, *, stop_at: int | None = None) -> None:
        """Runs to ``max_iter`` (or ``stop_at``, to imitate a killed run), then writes ``clip_final.pth``."""
        batches, clock = self._batches(), (time.perf_counter(), self.iteration)
        end = min(self.max_iter, stop_at if stop_at is not None else self.max_iter)
        while self.iteration < end:
            loss = self.step(batches)
            if self.history is not None:
                self.history.append(loss)
            period = self.solver.checkpoint_period
            if period and self.iteration % period == 0:
                self.save("last.pth")
            if self.solver.log_period and self.iteration % self.solver.log_period == 0:
                clock = self._log(loss, clock)
        if self.iteration == self.max_iter:
            self.save("last.pth")
            if dist.is_main_process():
                save_clip(self.output / "clip_final.pth", self.clip, section=self.config.clip, stage=self.config.stage)

    def _batches(self) -> Iterator[PairBatch]:
        sampler = StreamSampler(len(self.dataset), seed=self.solver.seed, rank=dist.get_rank(),
                                world_size=dist.get_world_size(), batch_per_gpu=self.solver.batch_per_gpu,
                                accum_steps=self.accum, start_position=self.position)
        return iter(build_loader(self.dataset, sampler=sampler, collate=collate_pairs,
                                 num_workers=self.config.data.num_workers, pin_memory=self.device.type == "cuda"))

    def step(self, batches: Iterator[PairBatch]) -> float:
        """One optimizer step on the effective batch; returns its contrastive loss."""
        micro = [next(batches) for _ in range(self.accum)]
        texts = _gather_rows(torch.cat([self._encode_nouns(b.nouns) for b in micro]))  # [G, D] unit norm
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._direct(micro[0], texts) if self.accum == 1 else self._cached(micro, texts)
        self._optimizer_step()
        self.scheduler.step()
        self.iteration += 1
        self.position += self.global_batch
        return loss

    def _forward(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = AMP_DTYPES[self.solver.amp]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            features, scale = self.ddp(batch.images.to(self.device), batch.masks.to(self.device))
        return F.normalize(features.float(), dim=-1), scale.float()

    def _direct(self, batch: PairBatch, texts: torch.Tensor) -> float:
        """accum 1: one pass; the objective counts own features W times, the scale once (see the module doc)."""
        images, scale = self._forward(batch)
        everyone = _gather_rows(images)
        loss = contrastive_loss(everyone, texts, scale)
        world = dist.get_world_size()
        objective = loss
        if world > 1:
            objective = world * loss - (world - 1) * contrastive_loss(everyone.detach(), texts, scale)
        self.scaler.scale(objective).backward()
        return float(loss.detach())

    def _cached(self, micro: list[PairBatch], texts: torch.Tensor) -> float:
        """accum > 1: gradient caching over the micro-batches (see the module doc)."""
        with torch.no_grad():
            local = torch.cat([self._forward(b)[0] for b in micro])  # [A x B, D]
        local.requires_grad_(True)
        scale = self.clip.logit_scale.exp().detach().float().requires_grad_(True)
        loss = contrastive_loss(_gather_rows(local), texts, scale)
        loss.backward()
        assert local.grad is not None and scale.grad is not None
        feature_grad, scale_grad = local.grad * dist.get_world_size(), scale.grad
        rows = self.solver.batch_per_gpu
        for index, batch in enumerate(micro):
            last = index == len(micro) - 1
            sync = contextlib.nullcontext() if last or not isinstance(self.ddp, DistributedDataParallel) \
                else self.ddp.no_sync()
            with sync:
                images, live_scale = self._forward(batch)
                surrogate = (images * feature_grad[index * rows:(index + 1) * rows]).sum()
                surrogate = surrogate + live_scale * (scale_grad if last else 0.0)  # the scale's gradient once
                self.scaler.scale(surrogate).backward()
        return float(loss.detach())

    def _encode_nouns(self, nouns: list[str]) -> torch.Tensor:
        """[N, D] unit-norm embeddings of the nouns by the locked text tower."""
        return F.normalize(encode_tokens(self.clip, self.tokenizer(nouns).to(self.device)).float(), dim=-1)

    def _optimizer_step(self) -> None:
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    def _log(self, loss: float, clock: tuple[float, int]) -> tuple[float, int]:
        now = time.perf_counter()
        speed = (self.iteration - clock[1]) / max(now - clock[0], 1e-9)
        if dist.is_main_process():
            logger.info("%s iter %d/%d  loss %.4f  lr %.3g  scale %.2f  %.2f it/s", self.config.stage, self.iteration,
                        self.max_iter, loss, self.optimizer.param_groups[0]["lr"],
                        float(self.clip.logit_scale.detach().exp()), speed)
        return now, self.iteration

    # ---- checkpoints ------------------------------------------------------------------------------
    def save(self, name: str) -> None:
        rngs = dist.all_gather_object(rng_state())  # every rank takes part
        if not dist.is_main_process():
            return
        trainable = {n: p.detach().cpu() for n, p in self.clip.named_parameters() if p.requires_grad}
        save_torch(self.output / name, {
            "format": STATE_FORMAT, "stage": self.config.stage, "pairs": len(self.dataset),
            "global_batch": self.global_batch, "max_iter": self.max_iter, "trainable": trainable,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "iteration": self.iteration, "position": self.position,
            "rng": rngs, "world_size": dist.get_world_size(), "run_config": stage_settings(self.config)})

    def resume(self, path: str | Path) -> None:
        """Continues from a ``last.pth`` of the same stage, pair folder and effective batch."""
        state = read_checkpoint(path)
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{path} is not a checkpoint of the OVSeg CLIP stages; give the run's last.pth")
        self.resume_changes = resume_changes(state.get("run_config") or {}, stage_settings(self.config), source=path,
                                             rule=CLIP_STAGE_RESUME)
        mine = {"stage": self.config.stage, "pairs": len(self.dataset), "global_batch": self.global_batch}
        changed = [f"{k}: {state.get(k)!r} -> {v!r}" for k, v in mine.items() if state.get(k) != v]
        if self.max_iter < state["max_iter"]:  # e.g. fewer solver.epochs
            changed.append(f"max_iter: {state.get('max_iter')!r} -> {self.max_iter!r}")
        if changed:
            raise CheckpointError(f"{path} belongs to another run ({'; '.join(changed)}); "
                                  "resume with the preset and overrides that wrote it")
        params = dict(self.clip.named_parameters())
        unfit = [n for n, v in state["trainable"].items() if n not in params or params[n].shape != v.shape]
        if unfit:
            raise CheckpointError(f"{path} holds CLIP parameters that do not fit this CLIP (e.g. {unfit[0]}); "
                                  "resume with the clip settings that wrote it")
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.max_iter != state["max_iter"]:  # a longer run: the next step's rate from the new schedule
            factor = cosine_factor(self.scheduler.last_epoch, warmup=self.solver.warmup_iters, total=self.max_iter)
            for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["lr"] = base * factor
        self.iteration, self.position = state["iteration"], state["position"]
        if len(state["rng"]) == dist.get_world_size():
            set_rng_state(state["rng"][dist.get_rank()])
        else:
            seed_everything(derive_seed(self.solver.seed, self.iteration, dist.get_rank()))
        if dist.is_main_process():
            logger.info("resumed %s from %s at iteration %d", self.config.stage, path, self.iteration)
            for change in self.resume_changes:
                logger.info("resume changes %s: %r -> %r", change["key"], change["old"], change["new"])
            if self.max_iter != state["max_iter"]:
                logger.info("%s", CLIP_SCHEDULE_RULE)


def _accum_steps(config: StageConfig) -> int:
    s, world = config.solver, dist.get_world_size()
    per_pass = s.batch_per_gpu * world
    accum = s.accum_steps if s.accum_steps is not None else s.batch_size // per_pass
    if accum < 1 or per_pass * accum != s.batch_size:
        raise ConfigError(f"solver.batch_size={s.batch_size} is not solver.batch_per_gpu ({s.batch_per_gpu}) x "
                          f"{world} process(es) x accumulation steps; "
                          "change solver.batch_per_gpu or solver.accum_steps")
    return accum
