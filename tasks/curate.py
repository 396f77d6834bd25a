"""Curation of one video's sampled frames: blank frames and near-duplicates are dropped, and counted.

A frame is blank when its 32x32 thumbnail is near-uniform in every channel (black, white, a
flat colour, the bottom of a fade). A near-duplicate is within `dedupe_distance` bits of a
frame already kept from the same video, by a 64-bit DCT hash (pHash, as imagehash's phash:
the 8x8 lowest frequencies of a 32x32 grey thumbnail, each against their median). It
ignores re-encoding and small shifts, and brightness: scaling the pixels scales every
coefficient and their median alike, so a fade's frames hash like the frame they fade from.
A mirror image flips the signs of the odd horizontal frequencies: it is not its original.

Each hash is compared first with the kept hash the previous one was near (one int XOR +
popcount: most frames of a shot end there), then with every hash kept so far (loops repeat
minutes apart) in one numpy XOR + popcount over the packed hashes: about 1 ns a kept frame
(docs/curation.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from synthwave.errors import UserError
from synthwave.settings import FrameSettings
from tasks.frames import Frame

THUMB = 32  # side of the thumbnail both checks look at
_LOW = 8  # 8x8 lowest DCT frequencies: 64 bits


def _dct_rows() -> np.ndarray:
    """The first _LOW rows of the orthonormal DCT-II matrix of size THUMB, as cv2.dct uses it."""
    n, k = np.arange(THUMB), np.arange(_LOW)[:, None]
    rows = np.cos(np.pi * (2 * n + 1) * k / (2 * THUMB)) * np.sqrt(2 / THUMB)
    rows[0] /= np.sqrt(2)
    return rows.astype(np.float32)


# cv2.dct(grey)[:8, :8] is _DCT @ grey @ _DCT.T: only the 64 coefficients the hash keeps are computed.
_DCT = _dct_rows()
_DCT_T = np.ascontiguousarray(_DCT.T)


class CurationError(UserError, ValueError):
    """Every sampled frame of a video was blank, or one repeated image."""


def thumbnail(image: np.ndarray) -> np.ndarray:
    """32x32 BGR average of the frame, so noise and compression artefacts wash out before either check."""
    # 128x128 samples, then halved twice (bilinear at exactly 2:1 averages each 2x2 block): each
    # pixel averages 16 samples of its cell. As robust to shifts, noise and fades as INTER_AREA
    # (benchmarks/dedupe.py) at a third of its cost (36 against 120 us for a 180x320 frame).
    thumb = cv2.resize(image, (4 * THUMB, 4 * THUMB), interpolation=cv2.INTER_NEAREST)
    for side in (2 * THUMB, THUMB):
        thumb = cv2.resize(thumb, (side, side), interpolation=cv2.INTER_LINEAR)
    return thumb


def spread(thumb: np.ndarray) -> float:
    """The largest standard deviation of a thumbnail's channels (0-255 scale); blank below blank_std."""
    return float(cv2.meanStdDev(thumb)[1].max())


def dct_hash(thumb: np.ndarray) -> int:
    """64-bit perceptual hash of a BGR thumbnail."""
    low = (_DCT @ cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY) @ _DCT_T).ravel()
    # The products' float error (under 0.002) must not set bits of its own where cv2.dct gives
    # exact zeros: a flat thumbnail hashes 0x8000000000000000, as it did.
    low[np.abs(low) < 0.005] = 0
    ordered = np.sort(low)
    median = (ordered[31] + ordered[32]) / 2  # np.median, at a fifth of its cost
    return int.from_bytes(np.packbits(low > median).tobytes(), "big")


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class HashIndex:
    """Packed 64-bit hashes; `near` compares one with all of them in one vectorised pass.

    It first tries the hash it last added or found near, alone: consecutive frames of a shot
    are near the same kept frame, and one int XOR + popcount is ~50 times cheaper than the pass.
    """

    def __init__(self) -> None:
        self.hashes = np.empty(256, np.uint64)
        self.count = 0
        self.last = 0  # a hash of the index (once count > 0): the one last added or found near

    def add(self, value: int) -> None:
        if self.count == len(self.hashes):
            self.hashes = np.concatenate([self.hashes, np.empty_like(self.hashes)])
        self.hashes[self.count] = value
        self.count += 1
        self.last = value

    def near(self, value: int, max_distance: int) -> bool:
        if self.count == 0:
            return False
        if (value ^ self.last).bit_count() <= max_distance:
            return True
        distances = np.bitwise_count(self.hashes[: self.count] ^ np.uint64(value))
        closest = distances.argmin()
        if distances[closest] > max_distance:
            return False
        self.last = int(self.hashes[closest])
        return True


def repeats(videos: list[tuple[str, list[list]]], max_distance: int) -> dict[str, list[int]]:
    """Frames of each video (key, manifest "hashes") within `max_distance` of a frame an earlier
    video put in the dataset: {video key: [frame index, ...]}, for videos with any. A key
    listed again (the same video twice) is skipped, never compared with itself."""
    seen, done, found = HashIndex(), set(), {}
    for key, frames in videos:
        if key in done:
            continue
        done.add(key)
        values = [int(value, 16) for _, value in frames]
        repeated = [seen.near(value, max_distance) for value in values]
        found[key] = [index for (index, _), same in zip(frames, repeated, strict=True) if same]
        for value, same in zip(values, repeated, strict=True):
            if not same:
                seen.add(value)
    return {key: indices for key, indices in found.items() if indices}


class Curator:
    """Which sampled frames of one video are kept, decided in frame order, and the counts.

    Segments read concurrently (tasks/shards.py): a later segment's thread calls `prefilter`,
    which drops its blank frames and the duplicates of frames already kept (those are before
    it in the video, so one pass would drop them too) and leaves the rest to `admit`, called
    in frame order when the segments are joined. The shards are those of one pass.
    """

    def __init__(self, settings: FrameSettings) -> None:
        self.settings = settings
        self.kept = HashIndex()
        self.kept_frames: list[tuple[int, int]] = []  # (frame index, hash), in frame order, with dedupe
        self.lock = threading.Lock()
        self.sampled = self.blank = self.duplicate = 0

    @property
    def active(self) -> bool:
        return self.settings.dedupe or self.settings.drop_blank

    def fingerprint(self, image: np.ndarray) -> int | None:
        """The frame's hash (0 without dedupe); None if it is blank and blank frames are dropped."""
        thumb = thumbnail(image)
        blank = self.settings.drop_blank and spread(thumb) < self.settings.blank_std
        with self.lock:
            self.sampled += 1
            self.blank += blank
        if blank:
            return None
        return dct_hash(thumb) if self.settings.dedupe else 0

    def admit(self, value: int, index: int) -> bool:
        """Keep frame `index` unless it is a near-duplicate of one kept; call in frame order only."""
        with self.lock:
            if self.settings.dedupe and self.kept.near(value, self.settings.dedupe_distance):
                self.duplicate += 1
                return False
            self.kept.add(value)
            if self.settings.dedupe:
                self.kept_frames.append((index, value))
            return True

    def filter(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """The kept frames, in order."""
        if not self.active:
            yield from self.count_all(frames)
            return
        for frame in frames:
            value = self.fingerprint(frame.image)
            if value is not None and self.admit(value, frame.index):
                yield frame

    def prefilter(self, frames: Iterable[Frame], pending: dict[int, int]) -> Iterator[Frame]:
        """A later segment's frames that may be kept; their hashes go to `pending` by frame index."""
        if not self.active:
            yield from self.count_all(frames)
            return
        for frame in frames:
            value = self.fingerprint(frame.image)
            if value is None:
                continue
            with self.lock:
                known = self.settings.dedupe and self.kept.near(value, self.settings.dedupe_distance)
                self.duplicate += known
            if not known:
                pending[frame.index] = value
                yield frame

    def count_all(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        for frame in frames:
            with self.lock:
                self.sampled += 1
            yield frame

    def counts(self) -> dict[str, int]:
        kept = self.sampled - self.blank - self.duplicate
        return {"sampled": self.sampled, "kept": kept, "dropped_duplicate": self.duplicate, "dropped_blank": self.blank}

    def check(self, path: Path) -> None:
        """CurationError if nothing but blank frames, or one image over and over, was sampled."""
        counts = self.counts()
        if counts["kept"] == 0:
            raise CurationError(
                f"{path}: all {self.sampled} sampled frames are blank (black, white or one flat colour); "
                "pass --keep-blank to keep them"
            )
        if counts["kept"] == 1 and self.duplicate > 0:
            raise CurationError(
                f"{path}: its {self.sampled} sampled frames are one repeated image"
                f"{f' and {self.blank} blank' if self.blank else ''}; pass --no-dedupe to keep them all"
            )
