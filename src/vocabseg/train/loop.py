"""The training loop: micro-batches, accumulation, AMP, clipping, checkpoints, evaluation, logs.

One iteration = one optimizer step on the effective batch ``batch_per_gpu x
world_size x accum_steps``. Non-final micro-steps skip DDP's gradient all-reduce
(``no_sync``). The mask losses are renormalised so that the step equals one
forward pass over the whole effective batch with the official normaliser (target
masks per rank, averaged over ranks): with ``accum_steps = 1`` this is exactly
the official objective, and ``1 process x 2 steps`` equals ``2 processes x 1 step``.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import torch
from torch.nn.parallel import DistributedDataParallel

from vocabseg import distributed as dist
from vocabseg.checkpoints import save_checkpoint
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.models import ModelFamily, SegmentationModel, Settings
from vocabseg.text import TextClassifier
from vocabseg.train.cascade_clip.data import DenseTrainDataset
from vocabseg.train.checkpoint import RESUME_SCHEDULE_RULE, TRAINER_KEY, read_training_checkpoint, resume_changes
from vocabseg.train.data import Batch, PadCollate, StreamSampler, TrainDataset, build_loader
from vocabseg.train.rng import CRITERION, derive_seed, rng_state, seed_everything, set_rng_state

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

# model (unwrapped, in eval mode), iteration -> {"panoptic/PQ": 41.2, ...}
EvalFn = Callable[[torch.nn.Module, int], dict[str, float]]
AMP_DTYPES = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}
MASK_LOSSES = ("loss_mask", "loss_dice")  # the losses SetCriterion divides by the number of masks
logger = logging.getLogger(__name__)  # progress notes (rank 0); `vocabseg train` shows them on stderr


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` itself in a single process, else its DistributedDataParallel wrapper."""
    if dist.get_world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    # broadcast_buffers=False: the only buffers are the frozen CLIP's, identical on every rank.
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


@dataclass(frozen=True)
class LoopSettings:
    max_iter: int
    batch_per_gpu: int
    accum_steps: int
    amp: str  # off | fp16 | bf16
    clip_grad: float  # full-model gradient L2 norm; 0 disables
    checkpoint_period: int  # 0: only at the end
    eval_period: int  # 0: never
    best_metric: str
    log_period: int
    seed: int
    num_workers: int = 0


class StepResult(NamedTuple):
    iteration: int  # 0-based index of the iteration just done
    total: float  # weighted objective of the effective batch
    losses: dict[str, float]  # unweighted terms of the final prediction (renormalised), mean over micro-batches
    lr: float
    grad_norm: float  # before clipping
    skipped: bool  # non-finite gradients: no optimizer step


class Trainer:
    """Trains a model of any family with its criterion; frozen parts stay out of the optimizer."""

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        family: ModelFamily,
        model_config: Any,
        model_settings: Settings,
        criterion: torch.nn.Module,
        text: TextClassifier,
        train_vocabulary: str,
        dataset: TrainDataset | DenseTrainDataset,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        settings: LoopSettings,
        device: torch.device,
        output_dir: str | Path | None = None,
        eval_fn: EvalFn | None = None,
        run_config: dict | None = None,
        keep_history: bool = False,
        collate: Callable[[list], Batch] | None = None,
    ):
        """``collate``: examples -> Batch; default: the model's normalisation and padding (LSJ examples)."""
        if settings.amp not in AMP_DTYPES:
            raise ConfigError(f"solver.amp must be one of {', '.join(AMP_DTYPES)}, got {settings.amp!r}")
        self.model, self.family, self.model_config = model.to(device).train(), family, model_config
        self.model_settings = model_settings
        self.criterion: Any = criterion  # the family's criterion: weighted_total is not on nn.Module
        self.dataset, self.settings, self.device = dataset, settings, device
        self.optimizer, self.scheduler, self.eval_fn = optimizer, scheduler, eval_fn
        self.text = text.to(device)  # computed once with the frozen text tower
        self.train_vocabulary, self.run_config = train_vocabulary, run_config or {}
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.ddp = wrap_ddp(model, device)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")
        policy = cast(SegmentationModel, model).input_policy(model_settings)
        self.collate = collate or PadCollate(policy.pixel_mean, policy.pixel_std, policy.size_divisibility)
        self.iteration, self.position = 0, 0  # position: next sample of the global stream
        self.best: dict[str, Any] | None = None  # {"metric", "value", "iteration"} of the best evaluation
        self.history: list[StepResult] | None = [] if keep_history else None
        self._writer: SummaryWriter | Literal[False] | None = None  # False: tensorboard is not installed
        self._clock = (time.perf_counter(), self.iteration)  # (time, iteration) of the last speed measurement
        self._saved_at: int | None = None
        self.resume_changes: list[dict[str, Any]] = []  # settings a resume changed: [{"key", "old", "new"}]

    @property
    def global_batch(self) -> int:
        return self.settings.batch_per_gpu * dist.get_world_size() * self.settings.accum_steps

    # ---- the loop -------------------------------------------------------------------------------
    def train(self) -> None:
        """Runs iterations until ``max_iter``, checkpointing, evaluating and logging on the way."""
        batches = self.batch_stream()
        self._clock = (time.perf_counter(), self.iteration)
        while self.iteration < self.settings.max_iter:
            result = self.step(batches)
            if self.history is not None:
                self.history.append(result)
            self._after_step(result)
        if self.output_dir is not None:
            if self._saved_at != self.iteration:
                self.save("last.pth")
            self.save("model_final.pth")
        if self._writer:
            self._writer.close()

    def batch_stream(self) -> Iterator[Batch]:
        """This rank's micro-batches, from the current stream position on."""
        sampler = StreamSampler(len(self.dataset), seed=self.settings.seed, rank=dist.get_rank(),
                                world_size=dist.get_world_size(), batch_per_gpu=self.settings.batch_per_gpu,
                                accum_steps=self.settings.accum_steps, start_position=self.position)
        return iter(build_loader(self.dataset, sampler=sampler, collate=self.collate,
                                 num_workers=self.settings.num_workers, pin_memory=self.device.type == "cuda"))

    def step(self, batches: Iterator[Batch]) -> StepResult:
        """One optimizer step over ``accum_steps`` micro-batches of this rank."""
        accum = self.settings.accum_steps
        # All micro-batches first: their mask counts set the loss normaliser (inputs are small next to activations).
        micro = [next(batches).to(self.device) for _ in range(accum)]
        scales = self._mask_loss_scales(micro)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        terms: dict[str, float] = {}
        for index, batch in enumerate(micro):
            last, ddp = index == accum - 1, self.ddp
            with ddp.no_sync() if not last and isinstance(ddp, DistributedDataParallel) else contextlib.nullcontext():
                losses = self._losses(batch, scale=scales[index])
                objective = self.criterion.weighted_total(losses) / accum
                self.scaler.scale(objective).backward()
            total += objective.item()  # note: a device sync per micro-batch
            for name in (n for n in ("loss_ce", *MASK_LOSSES) if n in losses):  # Cascade-CLIP has no loss_ce
                terms[name] = terms.get(name, 0.0) + losses[name].item() / accum
        grad_norm, skipped = self._optimizer_step()
        self.scheduler.step()
        self.iteration += 1
        self.position += self.global_batch
        return StepResult(self.iteration - 1, total, terms, lr, grad_norm, skipped)

    def _losses(self, batch: Batch, *, scale: float) -> dict[str, torch.Tensor]:
        """Unweighted losses of one micro-batch, mask losses renormalised to the effective batch."""
        # Matching and point sampling draw from a generator tied to the micro-batch's first
        # stream position: the same images get the same points however the batch is split.
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.settings.seed, CRITERION, batch.keys[0].position))
        dtype = AMP_DTYPES[self.settings.amp]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            outputs = self.ddp(batch.images, self.text)
        losses = self.criterion(outputs, batch.targets, generator=generator)
        return {k: v * scale if k.startswith(MASK_LOSSES) else v for k, v in losses.items()}

    def _mask_loss_scales(self, micro: list[Batch]) -> list[float]:
        """Per micro-batch factor turning SetCriterion's mask normaliser into the effective batch's.

        SetCriterion divides a micro-batch's mask losses by its target masks averaged
        over ranks; the effective batch's normaliser is the masks of all micro-batches
        of all ranks divided by ``world_size x accum_steps``. One all-reduce per iteration.
        """
        counts = torch.tensor([float(sum(len(t["labels"]) for t in b.targets)) for b in micro], device=self.device)
        totals = dist.all_reduce_sum(counts)  # [accum]: masks of micro-step a over all ranks
        world, accum = dist.get_world_size(), len(micro)
        per_step = (totals / world).clamp(min=1)  # what SetCriterion divides by
        effective = (totals.sum() / (world * accum)).clamp(min=1)
        return (per_step / effective).tolist()

    def _optimizer_step(self) -> tuple[float, bool]:
        """Unscale, clip the full-model gradient norm, step unless a gradient is inf/NaN."""
        self.scaler.unscale_(self.optimizer)
        max_norm = self.settings.clip_grad if self.settings.clip_grad > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, max_norm))  # note: a device sync
        finite = math.isfinite(grad_norm)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the step itself when it found inf/NaN
            self.scaler.update()
        elif finite:
            self.optimizer.step()
        return grad_norm, not finite

    # ---- hooks ----------------------------------------------------------------------------------
    def _after_step(self, result: StepResult) -> None:
        it, settings = self.iteration, self.settings
        if settings.log_period and (it % settings.log_period == 0 or it == settings.max_iter):
            self._log(result)
        if self.output_dir is not None and settings.checkpoint_period and it % settings.checkpoint_period == 0:
            self.save(f"model_{it:07d}.pth")
            self.save("last.pth")
            self._saved_at = it
        eval_due = settings.eval_period and (it % settings.eval_period == 0 or it == settings.max_iter)
        if self.eval_fn is not None and eval_due:
            self.evaluate()

    def _log(self, result: StepResult) -> None:
        local = torch.tensor([result.total, *result.losses.values()], dtype=torch.float64, device=self.device)
        values = dist.all_reduce_mean(local).tolist()  # every rank takes part
        start, start_iter = self._clock
        now = time.perf_counter()
        speed = (self.iteration - start_iter) / max(now - start, 1e-9)
        self._clock = (now, self.iteration)
        if not dist.is_main_process():
            return
        eta = datetime.timedelta(seconds=int((self.settings.max_iter - self.iteration) / max(speed, 1e-9)))
        terms = ", ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in zip(result.losses, values[1:]))
        skipped = "  (step skipped: non-finite gradient)" if result.skipped else ""
        logger.info("iter %d/%d  loss %.4f (%s)  lr %.3g  grad %.3g  %.2f it/s  eta %s%s", self.iteration,
                    self.settings.max_iter, values[0], terms, result.lr, result.grad_norm, speed, eta, skipped)
        scalars = {"loss/total": values[0],
                   **{f"loss/{k.removeprefix('loss_')}": v for k, v in zip(result.losses, values[1:])},
                   "lr": result.lr, "grad_norm": result.grad_norm, "speed/it_per_s": speed}
        self._tensorboard(scalars)

    def _tensorboard(self, scalars: dict[str, float]) -> None:
        if self.output_dir is None or not dist.is_main_process():
            return
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is the "train" extra
                logger.warning("tensorboard is not installed (pip install 'vocabseg[train]'); "
                               "logging to the console only")
                self._writer = False
                return
            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        if self._writer:
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, self.iteration)

    def evaluate(self) -> dict[str, float]:
        """Runs the evaluation hook (on every rank); rank 0's metrics decide ``best.pth``."""
        if self.eval_fn is None:
            raise ConfigError("nothing to evaluate on: set eval.dataset in the preset")
        self.model.eval()
        try:
            with torch.no_grad():
                metrics = self.eval_fn(self.model, self.iteration) or {}
        finally:
            self.model.train()
        metrics = dist.all_gather_object(metrics)[0]
        self._tensorboard({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        value = metrics.get(self.settings.best_metric)
        if value is not None and (self.best is None or value > self.best["value"]):
            self.best = {"metric": self.settings.best_metric, "value": float(value), "iteration": self.iteration}
            if self.output_dir is not None:
                self.save("best.pth")
        if dist.is_main_process():
            logger.info("eval at iter %d: %s", self.iteration, metrics)
        return metrics

    # ---- checkpoints ----------------------------------------------------------------------------
    def trainer_state(self) -> dict:
        """Everything but the weights; call on every rank (gathers their random states)."""
        return {
            "iteration": self.iteration,
            "position": self.position,
            "global_batch": self.global_batch,
            "world_size": dist.get_world_size(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": dist.all_gather_object(rng_state()),
            "best": self.best,
            "run_config": self.run_config,
        }

    def save(self, name: str) -> Path:
        """Writes ``output_dir/name`` atomically (rank 0); every rank must call it."""
        if self.output_dir is None:
            raise ConfigError(f"cannot save {name}: the trainer has no output folder")
        state = self.trainer_state()
        path = self.output_dir / name
        if dist.is_main_process():
            save_checkpoint(path, self.model, family=self.family, config=self.model_config,
                            settings=self.model_settings, train_vocabulary=self.train_vocabulary,
                            include_frozen=False, extra={TRAINER_KEY: state})
        return path

    def resume(self, path: str | Path) -> None:
        """Continues from a training checkpoint: weights, optimizer, schedule, scaler, stream, random states."""
        state = read_training_checkpoint(path, model=self.model, family=self.family, config=self.model_config)
        theirs, ours = (state.get("run_config") or {}).get("zero_shot"), self.run_config.get("zero_shot")
        if theirs is not None and ours is not None and theirs != ours:  # e.g. a transductive run given inductive's
            raise CheckpointError(f"{path} was trained with zero_shot {theirs}, this run sets {ours}; resume with the "
                                  "preset that wrote it, or start from its weights with model.init (or --init)")
        self.resume_changes = resume_changes(state.get("run_config") or {}, self.run_config, source=path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:
            raise CheckpointError(f"{path}: optimizer state does not fit ({error}); "
                                  "was it written by another recipe?") from None
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.position, self.best = state["iteration"], state["position"], state.get("best")
        rngs = state.get("rng") or []
        if len(rngs) == dist.get_world_size():
            set_rng_state(rngs[dist.get_rank()])
        else:  # another process count: fresh but deterministic streams
            seed_everything(derive_seed(self.settings.seed, self.iteration, dist.get_rank()))
        if dist.is_main_process():
            logger.info("resumed from %s at iteration %d", path, self.iteration)
            for change in self.resume_changes:
                logger.info("resume changes %s: %r -> %r", change["key"], change["old"], change["new"])
            if any(change["key"] == "solver.max_iter" for change in self.resume_changes):
                logger.info("%s", RESUME_SCHEDULE_RULE)
