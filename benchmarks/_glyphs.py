"""A third atypical target: the letters A-J rendered from the fonts matplotlib's wheel ships (notMNIST-style).

notMNIST (Bulatov 2011) is the letters A-J in many typefaces; this is the same task made reproducibly
from the TrueType fonts inside matplotlib's wheel (DejaVu, STIX, Computer Modern: 22 faces that draw
Latin letters), so nothing is downloaded. Each image is one letter, light on black, 28 x 28, at a random
size, rotation, shear and offset, with blur and noise. Train and test use **different fonts** (a seeded
split of the faces: 16 train, 6 test), so the target asks for shapes that generalise across typefaces,
not memorised glyphs; each letter is upper or lower case at random (a class is a letter, not a shape),
and two stray strokes clutter every image. The 80 calibration images are drawn from the train fonts with
their own seed.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np

LETTERS = "ABCDEFGHIJ"
SPLIT_SEED = 2026
# faces without Latin letters: math extension and symbols, size variants, the last-resort box font and
# DejaVu's Display faces (a few display-math glyphs only: they draw A-J as nothing)
_SKIP = ("cmex10", "cmsy10", "STIXSiz", "STIXNonUni", "LastResort", "DejaVuSansDisplay", "DejaVuSerifDisplay")


def font_files() -> list[str]:
    """matplotlib's bundled faces that draw A-J, sorted by file name (the order the split permutes)."""
    import matplotlib

    folder = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".ttf") and not n.startswith(_SKIP))
    return [os.path.join(folder, n) for n in names]


def _render(font: str, letter: str, rng: np.random.Generator) -> np.ndarray:
    """One (28, 28) uint8 glyph: upper or lower case, drawn at 4x on a 112 px canvas with two stray
    strokes, sheared, rotated, reduced, blurred and noised."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    size = int(rng.integers(44, 84))  # glyph height at 4x: 11-21 px at 28 px
    face = ImageFont.truetype(font, size)
    canvas = Image.new("L", (112, 112), 0)
    draw = ImageDraw.Draw(canvas)
    text = letter if rng.random() < 0.5 else letter.lower()
    box = draw.textbbox((0, 0), text, font=face)
    w, h = box[2] - box[0], box[3] - box[1]
    dx, dy = rng.integers(-14, 15, size=2)
    draw.text(((112 - w) / 2 - box[0] + dx, (112 - h) / 2 - box[1] + dy), text, font=face,
              fill=int(rng.integers(150, 256)))  # fmt: skip
    for _ in range(2):  # clutter: strokes that belong to no letter
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 112, size=4))
        draw.line((x0, y0, x1, y1), fill=int(rng.integers(60, 200)), width=int(rng.integers(2, 7)))
    shear = float(rng.uniform(-0.35, 0.35))
    canvas = canvas.transform((112, 112), Image.Transform.AFFINE, (1, shear, -56 * shear, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR)  # fmt: skip
    canvas = canvas.rotate(float(rng.uniform(-25, 25)), resample=Image.Resampling.BILINEAR)
    small = canvas.resize((28, 28), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.5))
    x = np.asarray(small, dtype=np.float32) + rng.normal(0, 20, size=(28, 28))
    return np.clip(x, 0, 255).astype(np.uint8)


def _draw(fonts: list[str], n: int, seed: int, letters: str = LETTERS) -> tuple[np.ndarray, np.ndarray]:
    """n images, classes balanced (n/10 each), fonts cycled at random; (N, 28, 28) uint8 and labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(letters)
    rng.shuffle(labels)
    picks = rng.integers(0, len(fonts), size=n)
    x = np.stack([_render(fonts[f], letters[c], rng) for f, c in zip(picks, labels, strict=True)])
    return x, labels.astype(np.int64)


@cache
def glyph_arrays(
    train: int = 2000, test: int = 1000, calib: int = 80, letters: str = LETTERS
) -> dict[str, np.ndarray]:
    """x/y for train, test (held-out fonts) and calib (train fonts, a separate draw). ``letters``: the
    ten classes; A-J (scenarios 5, 6, 11, 12, 13) or K-T (scenario 14: a target no design was made on),
    drawn with their own seeds, the same font split."""
    draw_seed = SPLIT_SEED if letters == LETTERS else SPLIT_SEED + 100  # A-J: the images as committed
    fonts = font_files()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(fonts))
    test_fonts = [fonts[i] for i in order[:6]]
    train_fonts = [fonts[i] for i in order[6:]]
    out: dict[str, np.ndarray] = {}
    for split, faces, n, seed in (("train", train_fonts, train, 1), ("test", test_fonts, test, 2),
                                  ("calib", train_fonts, calib, 3)):  # fmt: skip
        out[f"x_{split}"], out[f"y_{split}"] = _draw(faces, n, draw_seed + seed, letters)
    return out
