"""bfloat16 data as numpy sees it: its raw 16-bit patterns (numpy has no bfloat16). The safetensors
reader hands these out without torch; the statistics widen them exactly to float32."""

from __future__ import annotations

import numpy as np


class Bf16:
    """bfloat16 data as its raw uint16 bit patterns (numpy has no bfloat16)."""

    def __init__(self, bits: np.ndarray) -> None:
        self.bits = bits
        self.shape = bits.shape
