"""Calibration images: find them, decode them robustly, preprocess them with the model's own config."""

from __future__ import annotations

import functools
import os
import random
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plastic.documents.validation import check_fields, describe, field_problem
from plastic.errors import DataError, UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from plastic.files.hub_config import HubConfig

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass
class CalibSet:
    """The images chosen for calibration, with labels when the folder has class subfolders."""

    root: Path
    files: list[Path]
    labels: list[int] | None  # index into class_names; None for a flat folder
    class_names: list[str]
    found: int  # images found before the --max-images cap
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # filled while decoding


def scan_folder(root: str | Path, *, max_images: int = 256, seed: int = 0) -> CalibSet:
    """Images under ``root`` (recursive, hidden files and folders ignored, deterministic order).

    With class subfolders (every image lies inside a first-level folder), labels are the folder names.
    When there are more than ``max_images``, a seeded sample is taken, spread over classes.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (--data takes a folder of images)")
    if max_images < 1:
        raise UsageError("--max-images must be at least 1")
    files: list[Path] = []
    odd: list[tuple[Path, str]] = []  # named like images but not regular files: never opened
    seen: set[tuple[int, int]] = set()  # (device, inode) of every folder walked: symlink loops end here
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                path = Path(dirpath) / name
                why = _not_regular(path)
                if why:
                    odd.append((path, why))
                else:
                    files.append(path)
    if not files:
        if odd:
            raise DataError(
                f"{root}: no regular image files ({len(odd)} skipped, e.g. {odd[0][0]}: {odd[0][1]})"
            )
        raise DataError(f"{root}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    rel = [f.relative_to(root).parts for f in files]
    nested = all(len(p) >= 2 for p in rel)
    class_names = sorted({p[0] for p in rel}) if nested else []
    labels = [class_names.index(p[0]) for p in rel] if nested else None
    found = len(files)
    if found > max_images:
        keep = spread_sample(labels if labels is not None else [0] * found, max_images, seed)
        files = [files[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    return CalibSet(root, files, labels, class_names, found, skipped=odd)


def _not_regular(path: Path) -> str:
    """Why ``path`` is not read: only regular files (and links to them) are opened. A FIFO would block
    ``open`` forever, a device could stream without end; both are skipped and counted instead."""
    try:
        mode = os.stat(path).st_mode  # follows links: a link to a regular file is read
    except OSError as e:
        return f"cannot be read ({e.strerror or type(e).__name__})"
    if stat.S_ISREG(mode):
        return ""
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder")):  # fmt: skip
        if test(mode):
            return f"not a regular file ({what})"
    return "not a regular file"


def spread_sample(labels: list[int], k: int, seed: int) -> list[int]:
    """k indices, seeded, round-robin over classes so that every class is represented; sorted."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    for members in by_class.values():
        rng.shuffle(members)
    picked: list[int] = []
    queues = [by_class[c] for c in sorted(by_class)]
    while len(picked) < k:
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop())
    return sorted(picked)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: grayscale, palette (with transparency), RGBA, CMYK, 16/32-bit, float."""
    import numpy as np
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            a = a / 257.0  # full 16-bit range onto 0..255
        else:  # 32-bit int or float: no fixed range, stretch what is there
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # transparent -> black, like most loaders
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(path: Path) -> Image.Image:
    """Decode one image; PIL's decompression-bomb warning becomes an error (the image is skipped)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                img.load()  # decode now: truncated files fail here, not later
                return to_rgb(img)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise ValueError(
                f"image too large (over PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels); skipped"
            ) from None


def worker_count(requested: int, images: int, batch_size: int) -> int:
    """Decoder processes actually started: never more than the cores this process may run on, nor than
    the batches there are (a worker decodes whole batches); ``-j 40`` for 8 images starts one."""
    if requested <= 0:
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    batches = -(-images // max(batch_size, 1))
    return max(0, min(requested, cores, batches))


def _quiet_worker(parent: int, _worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which stops them: no traceback per worker.

    On Linux each worker also asks the kernel to kill it when its parent dies, however the parent
    ends (SIGKILL, the OOM killer): no decoder outlives plastic. PyTorch's own watchdog would notice
    only after seconds, and only between batches.

    A worker's own failures reach the parent through the DataLoader; what else a worker could print
    is a background thread's traceback (multiprocessing's ``resource_sharer``, when the parent stops
    mid-handshake for a batch), so it prints nothing unless ``PLASTIC_DEBUG=1``.
    """
    import signal
    import sys

    if os.environ.get("PLASTIC_DEBUG") != "1":
        sys.excepthook = _silent
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):  # the parent's handlers raise; a worker just ends
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    _die_with_parent(parent)


def _silent(*_exc_info: object) -> None:
    """A decoder worker's ``sys.excepthook``: its parent reports what matters (see :func:`_quiet_worker`)."""


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the parent dies (Linux ``prctl``); a parent already gone: exit now."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl in this libc: the watchdog still applies
            pass
    if os.getppid() != parent:  # the parent died before the request above took effect: end as it asked
        os.kill(os.getpid(), signal.SIGKILL)


class CalibDataset:
    """A map-style dataset; a file that cannot be decoded yields None (collated away, then counted)."""

    def __init__(
        self, calib: CalibSet, transform: Callable[[Any], torch.Tensor], grayscale: bool = False
    ) -> None:
        self.calib = calib
        self.transform = transform
        self.grayscale = grayscale  # a 1-channel model reads luminance

    def __len__(self) -> int:
        return len(self.calib.files)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        path = self.calib.files[i]
        try:
            img = load_image(path)
            x = self.transform(img.convert("L") if self.grayscale else img)
        except Exception as e:  # unreadable, corrupt, unsupported: skip and report, never fatal
            return i, None, f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
        return i, x, ""


def collate(
    batch: list[tuple[int, torch.Tensor | None, str]],
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    import torch

    ok = [(i, x) for i, x, _ in batch if x is not None]
    bad = [(i, why) for i, x, why in batch if x is None]
    xs = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], xs, bad


@dataclass
class DataConfig:
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    crop_pct: float
    crop_mode: str
    source: str  # where input_size came from: "option" | "metadata" | "model"


def resolve_data_config(
    model: Any,
    metadata: Mapping[str, str],
    *,
    input_size: tuple[int, int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    hub: HubConfig | None = None,
    in_chans: int | None = None,
) -> DataConfig:
    """The preprocessing, each field from the first that gives it: the options, timm's ``config.json``
    (``pretrained_cfg``), the checkpoint's ``input_size`` metadata, the model's own timm data config.

    With ``in_chans`` other than 3 the input size takes that channel count and a 3-value mean/std is
    averaged to one value per channel (grayscale models read images as luminance).
    """
    from plastic.model.backends import backend_of_model

    cfg = backend_of_model(model).data_defaults(model)
    source = "model"
    if input_size is not None:
        source = "option"
    elif hub is not None and hub.input_size is not None:
        input_size, source = hub.input_size, "config.json"
    elif metadata.get("input_size"):
        input_size, source = metadata_input_size(metadata["input_size"]), "metadata"
    size = tuple(input_size or cfg["input_size"])
    chans = in_chans or 3
    if source == "option" and size[0] not in (0, chans):  # 0: S or H,W given, channels the model's
        raise UsageError(
            f"--input-size has {size[0]} channel(s) but the model takes {chans}; give {chans},H,W or H,W"
        )
    if chans not in (1, 3):
        raise UsageError(
            f"the model takes {chans} input channels; calibration images give 1 (gray) or 3 (RGB)"
        )
    size = (chans, int(size[1]), int(size[2]))
    mean = mean or (hub.mean if hub else None) or tuple(cfg["mean"])
    std = std or (hub.std if hub else None) or tuple(cfg["std"])
    if len(mean) != chans:
        mean = (sum(mean) / len(mean),) * chans
    if len(std) != chans:
        std = (sum(std) / len(std),) * chans
    # every source was checked where it was read; this guards the merge (and timm's own defaults)
    check_fields({"input_size": size, "mean": tuple(mean), "std": tuple(std)}, "the preprocessing")
    return DataConfig(
        input_size=size,  # type: ignore[arg-type]
        mean=tuple(mean),
        std=tuple(std),
        interpolation=str((hub.interpolation if hub else None) or cfg.get("interpolation", "bilinear")),
        crop_pct=float((hub.crop_pct if hub else None) or cfg.get("crop_pct", 0.875)),
        crop_mode=str((hub.crop_mode if hub else None) or cfg.get("crop_mode", "center")),
        source=source,
    )


def metadata_input_size(text: str) -> tuple[int, int, int]:
    """A checkpoint's ``input_size`` metadata: C,H,W (or CxHxW); checked like every other source."""
    from plastic.errors import CheckpointError

    try:
        parsed = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        parsed = []
    where = f"the checkpoint's metadata input_size {describe(text)}"
    if len(parsed) != 3:
        raise CheckpointError(f"{where}: not C,H,W; pass --input-size C,H,W to override it")
    problem = field_problem("input_size", parsed)
    if problem:
        raise CheckpointError(f"{where}: {problem}; pass --input-size C,H,W to override it")
    return parsed[0], parsed[1], parsed[2]


def make_transform(cfg: DataConfig) -> Callable[[Any], torch.Tensor]:
    from timm.data.transforms_factory import create_transform

    return create_transform(  # type: ignore[no-any-return]
        input_size=cfg.input_size,
        is_training=False,
        interpolation=cfg.interpolation,
        mean=cfg.mean,
        std=cfg.std,
        crop_pct=cfg.crop_pct,
        crop_mode=cfg.crop_mode,
    )


def calib_batches(
    calib: CalibSet, cfg: DataConfig, batch_size: int, workers: int = 0
) -> Iterator[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    """(indices of the decoded images, their (B, C, H, W) batch or None, (index, why) of the skipped)."""
    import torch

    dataset: Any = CalibDataset(calib, make_transform(cfg), grayscale=cfg.input_size[0] == 1)
    started = worker_count(workers, len(dataset), batch_size)
    loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=started,
        collate_fn=collate,
        worker_init_fn=functools.partial(_quiet_worker, os.getpid()) if started > 0 else None,
    )
    yield from loader
