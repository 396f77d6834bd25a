"""Lossless PNG encoding of video frames, about 4x faster than OpenCV's.

Encoding dominated ingest at every=1 (cv2.imencode: ~1 ms for a 180x320 frame, over
half of each frame's CPU). A PNG is a zlib stream of filtered rows: here the rows get
the "Up" filter (each row minus the one above, one vectorised subtraction; on video
frames as small as OpenCV's best filter) and ISA-L's deflate, which at level 1 matches
zlib's size at a fraction of its time: ~0.35 ms a frame, same bytes on decode.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from isal import isal_zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP = 2  # PNG filter type: each byte minus the byte above it
_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(image: np.ndarray) -> bytes:
    """An HxWx3 uint8 BGR image (OpenCV's order) as an 8-bit RGB PNG."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"encode_png takes HxWx3 uint8 BGR images, not {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    pixels = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).reshape(height, width * 3)
    rows = np.empty((height, 1 + width * 3), np.uint8)
    rows[:, 0] = _UP
    rows[0, 1:] = pixels[0]  # the row above the first is zeros
    np.subtract(pixels[1:], pixels[:-1], out=rows[1:, 1:])  # uint8 wraps modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", isal_zlib.compress(rows, 1)) + _END
