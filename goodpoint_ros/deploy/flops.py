"""FLOP count of the GoodPoint network (no torch needed)."""
from __future__ import annotations

ENCODER_CHANNELS = [(1, 64), (64, 64), (64, 64), (64, 64), (64, 128), (128, 128), (128, 128), (128, 128)]


def network_flops(height: int, width: int) -> float:
    """2 × multiply-adds of all convolutions for an input of height × width."""
    total, h, w = 0.0, height, width
    for i, (cin, cout) in enumerate(ENCODER_CHANNELS):
        total += 2 * cin * cout * 9 * h * w
        if i in (1, 3, 5):
            h, w = h // 2, w // 2
    total += 2 * (128 * 256 * 9 + 256 * 64) * h * w      # detector head
    total += 2 * (128 * 256 * 9 + 256 * 256) * h * w     # descriptor head
    return total
