"""Short fine-tuning runs for the trial: labelled images held once, a stratified split, a candidate that
trains a given number of steps and is scored on the validation part.

Every candidate sees the same batches in the same order and starts from the same new head (paired
comparisons); what differs is the start (which layers were re-initialized) and the rate. The recipe
is the pre-registered one (BENCHMARKS.md, "Pre-registered: the trial"): AdamW, weight decay 0.05, a
cosine schedule over the candidate's full budget, batch 32, diagnose's preprocessing, no augmentation.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plastic.errors import DataError, UsageError
from plastic.measure.calib import CalibSet, DataConfig, calib_batches
from plastic.model.modules import output_tensor

MIN_PER_CLASS = 4  # fewer images in a class: no validation split with 2 on each side
VAL_SHARE = 0.25
MIN_EACH_SIDE = 2


@dataclass(frozen=True)
class Recipe:
    """The one recipe every candidate trains with; ``lr`` is the base rate before a candidate's scale."""

    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    optimizer: str = "AdamW"
    schedule: str = "cosine over the candidate's full budget"
    augmentation: str = "none (diagnose's preprocessing)"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LabelledImages:
    """Decoded images as uint8 (N, C, H, W) (a quarter of float32's memory), normalised per batch; or a
    caller's preprocessed float tensors as they are (``scale`` 1, mean 0, std 1)."""

    pixels: torch.Tensor  # (N, C, H, W) uint8: the preprocessed image before normalisation, x 255
    labels: torch.Tensor  # (N,) int64
    mean: torch.Tensor  # (1, C, 1, 1)
    std: torch.Tensor  # (1, C, 1, 1)
    class_names: list[str]
    skipped: int
    scale: float = 255.0

    @classmethod
    def from_tensors(cls, x: torch.Tensor, y: torch.Tensor, class_names: list[str]) -> LabelledImages:
        """Preprocessed (N, C, H, W) images and (N,) labels, used as given (``diagnose_model``)."""
        shape = (1, x.shape[1], 1, 1)
        return cls(x.detach().cpu(), y.detach().cpu().long(), torch.zeros(shape), torch.ones(shape),
                   class_names, 0, scale=1.0)  # fmt: skip

    def batch(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) float32 normalised as the model's preprocessing does, and (B,) labels."""
        x = self.pixels[idx].to(device).float().div_(self.scale)  # uint8: the [0, 1] tensor ToTensor made
        return x.sub_(self.mean.to(device)).div_(self.std.to(device)), self.labels[idx].to(device)


def load_labelled(calib: CalibSet, cfg: DataConfig, batch_size: int = 32) -> LabelledImages:
    """Decode every image of a class-subfolder set once with the model's preprocessing (normalisation
    deferred: stored as uint8). Unreadable images are skipped and counted."""
    if calib.labels is None:
        raise DataError(
            f"{calib.root}: the trial needs labelled images: put them in one subfolder per class "
            "(--trial-data DIR takes another folder)"
        )
    chans = cfg.input_size[0]
    plain = dataclasses.replace(cfg, mean=(0.0,) * chans, std=(1.0,) * chans)  # resize and crop only
    xs: list[torch.Tensor] = []
    ys: list[int] = []
    skipped = 0
    for idx, x, bad in calib_batches(calib, plain, batch_size):
        skipped += len(bad)
        if x is not None:
            xs.append(x.mul(255).round_().to(torch.uint8))  # exact: ToTensor gave k / 255
            ys.extend(calib.labels[i] for i in idx)
    if not xs:
        raise DataError(f"{calib.root}: none of the {len(calib.files)} images could be read")
    shape = (1, chans, 1, 1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(shape)
    std = torch.tensor(cfg.std, dtype=torch.float32).view(shape)
    return LabelledImages(torch.cat(xs), torch.tensor(ys), mean, std, calib.class_names, skipped)


def stratified_split(labels: torch.Tensor, class_names: list[str], seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: a seeded quarter of each class for validation, at least 2 images of
    each class on each side. One class, or a class under 4 images, is refused."""
    present = sorted(set(labels.tolist()))
    if len(present) < 2:
        raise DataError(
            f"the trial needs at least 2 classes to tell starts apart; found {len(present)} "
            f"({', '.join(class_names[c] for c in present) or 'none'})"
        )
    train: list[int] = []
    val: list[int] = []
    rng = random.Random(seed)
    for c in present:
        members = [i for i, y in enumerate(labels.tolist()) if y == c]
        if len(members) < MIN_PER_CLASS:
            raise DataError(
                f"class {class_names[c]!r} has {len(members)} readable image(s); the trial needs at least "
                f"{MIN_PER_CLASS} per class (2 to train, 2 to validate): add images to it"
            )
        rng.shuffle(members)
        n_val = min(len(members) - MIN_EACH_SIDE, max(MIN_EACH_SIDE, round(VAL_SHARE * len(members))))
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train), sorted(val)


def batch_order(train: list[int], steps: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """The batches of every step, the same for every candidate: seeded passes over the training part
    laid end to end and cut into full batches (a pass's tail joins the next pass's head)."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.tensor(train, dtype=torch.int64)
    size = min(batch_size, len(train))
    stream: list[torch.Tensor] = []
    have = 0
    while have < steps * size:
        stream.append(index[torch.randperm(len(index), generator=gen)])
        have += len(index)
    flat = torch.cat(stream)
    return [flat[i * size : (i + 1) * size] for i in range(steps)]


def logits_of(out: Any) -> torch.Tensor:
    """The class scores of any family's output (``model.modules.output_tensor``), or a UsageError."""
    try:
        return output_tensor(out)
    except TypeError:
        what = type(out).__name__
        raise UsageError(f"the model's output ({what}) holds no class scores to train on") from None


class Candidate:
    """One start at one rate in training: its model, optimizer and schedule over its full budget.

    ``train_to(steps)`` continues where the last call stopped, so a candidate that survives a rung goes
    on without repeating a step; its schedule was fixed for the full budget from the start.
    """

    def __init__(self, model: nn.Module, lr: float, budget: int, recipe: Recipe) -> None:
        self.model = model
        self.done = 0
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=budget)

    def train_to(
        self, steps: int, data: LabelledImages, order: list[torch.Tensor], device: torch.device, seed: int,
        tick: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """Train from the current step up to ``steps`` on ``order``'s batches. Dropout and anything else
        random draws from a generator seeded by (seed, first step): the same for every candidate."""
        self.model.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed * 100_003 + self.done)
            while self.done < steps:
                x, y = data.batch(order[self.done], device)
                loss = F.cross_entropy(logits_of(self.model(x)), y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.sched.step()
                self.done += 1
                if tick is not None:
                    tick()

    @torch.no_grad()
    def evaluate(
        self, data: LabelledImages, val: list[int], device: torch.device, batch_size: int
    ) -> tuple[list[bool], float]:
        """Per-image correctness on the validation part (in its order) and the mean cross-entropy."""
        self.model.eval()
        correct: list[bool] = []
        total = 0.0
        for i in range(0, len(val), batch_size):
            x, y = data.batch(torch.tensor(val[i : i + batch_size]), device)
            logits = logits_of(self.model(x)).float()  # (B, classes)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += (logits.argmax(-1) == y).tolist()
        loss = total / len(val)
        return correct, loss if loss == loss else float("inf")  # NaN loss (diverged) ranks last

    def release(self) -> None:
        """Drop the model and optimizer state (a candidate that did not go on to the next rung)."""
        del self.model, self.opt, self.sched
