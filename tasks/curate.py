"""Curation of one video's sampled frames: blank frames and near-duplicates are dropped, and counted.

A frame is blank when its thumbnail (`thumbnails`) is near-uniform in every channel (black,
white, a flat colour, the bottom of a fade). A near-duplicate of a frame already kept from the
same video agrees with it twice: in structure, within `dedupe_distance` bits of a 64-bit DCT
hash of the grey 32x32 thumbnail (pHash: its 8x8 lowest frequencies, each against their median),
and in colour, within `colour_distance` by a colour signature (each of 4x4 cells' chroma,
R-Y and B-Y, over the frame's mean luma). Both ignore re-encoding, small shifts and
brightness: a fade scales pixels, coefficients, median, chroma and luma alike, so its frames
match the frame they fade from. A mirror image flips the odd horizontal frequencies' signs;
two scenes of one layout in other colours differ in chroma: neither is a duplicate. A scene
fading in is kept as its first frame not blank, then replaced by each later duplicate of it
BRIGHTER than what stands for it: the fade's end is written, not its start.

Each frame is thumbnailed as it comes, while in the CPU's caches; the rest goes 32 frames at a
time (call overhead dominates, docs/curation.md): a batch is compared with every kept frame
(loops repeat minutes apart) by one numpy XOR + popcount, colour checked where the hash is
near, then the rest with each other, in frame order.
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
CELLS = 4  # the colour signature's grid: 4x4 cells
_CHROMA_UNIT = 64  # a signature's unit: 1/64 of the frame's mean luma


def _dct_rows() -> np.ndarray:
    """The first _LOW rows of the orthonormal DCT-II matrix of size THUMB, as cv2.dct uses it."""
    n, k = np.arange(THUMB), np.arange(_LOW)[:, None]
    rows = np.cos(np.pi * (2 * n + 1) * k / (2 * THUMB)) * np.sqrt(2 / THUMB)
    rows[0] /= np.sqrt(2)
    return rows


def _area_weights(size: int, into: int) -> np.ndarray:
    """(size, into): each of `into` equal spans of `size` values as a weighted mean of the values
    it covers, wholly or in part (INTER_AREA's weights)."""
    edges = np.arange(size + 1) * (into / size)  # each value's span, in output units
    starts, ends = edges[:-1, None], edges[1:, None]
    spans = np.arange(into)
    return np.clip(np.minimum(ends, spans + 1) - np.maximum(starts, spans), 0, None)


def _products() -> tuple[np.ndarray, np.ndarray]:
    """(left, right) such that left @ thumb.reshape(32, 48 * 3) @ right holds, top left, the 8x8
    lowest DCT frequencies of the grey 32x32 thumbnail and, bottom right, each cell's mean R-Y and
    B-Y.

    The thumbnail's columns, grey conversion, DCT, cell means and chroma are all linear: two
    matrix products give both fingerprints of a frame."""
    bgr_to_grey = np.array([0.114, 0.587, 0.299])  # BT.601 luma, as cv2.COLOR_BGR2GRAY
    bgr_to_chroma = np.array([[-0.114, 0.886], [-0.587, -0.587], [0.701, -0.299]])  # rows B, G, R; R-Y, B-Y
    cell_rows = _area_weights(THUMB, CELLS).T  # 4x32: the cells' means of 8
    dct = _dct_rows()
    left = np.zeros((_LOW + CELLS, THUMB))
    left[:_LOW], left[_LOW:] = dct, cell_rows
    right = np.zeros((3 * THUMB, _LOW + 2 * CELLS))
    right[:, :_LOW] = np.kron(dct.T, bgr_to_grey[:, None])
    right[:, _LOW:] = np.kron(cell_rows.T, bgr_to_chroma)
    columns = np.kron(_area_weights(_WIDE, THUMB), np.eye(3))  # 48 columns into 32, per channel
    return left.astype(np.float32), (columns @ right).astype(np.float32)


# A frame's thumbnail: 64x96 nearest samples, each 2x2 averaged (as OpenCV vectorises INTER_AREA),
# 32 rows of _WIDE; the 32x32 the checks are defined on is its columns' area means, inside _RIGHT.
_WIDE = 48
_SAMPLES = (2 * _WIDE, 2 * THUMB)  # (columns, rows), as cv2.resize takes a size
_LEFT, _RIGHT = _products()
_SIGNATURE = CELLS * CELLS + 1
_BATCH = 32  # frames fingerprinted together, at most
_BATCH_BYTES = 8 << 20  # and at most this much of them held while a batch fills
# A near-duplicate of the frame kept last, this much brighter than what stands for it, takes its
# place: a scene that fades in from black is kept as it looks, not as the fade's first frame.
BRIGHTER = 1.1
_NONE, _MANY = -1, -2  # a frame near no kept frame; near more than one
KEEP, REPLACE, DROP = "keep", "replace", "drop"  # what becomes of a frame, in frame order


class CurationError(UserError, ValueError):
    """Every sampled frame of a video was blank, or one repeated image."""


# complex64: one a cell, R-Y + i(B-Y) in _CHROMA_UNIT units; then the frame's mean luma (0-255), real.
Signature = np.ndarray
Fingerprint = tuple[int, Signature]  # (64-bit DCT hash, colour signature)
# frames, blank, hashes, signatures, match (the kept frame each is near: `HashIndex.matches`), brighter than it
_Batch = tuple[list[Frame], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class _Buffers:
    """A batch's thumbnails, allocated once a pass: a new array each batch costs page faults."""

    def __init__(self, frames: int) -> None:
        self.samples = np.empty((2 * THUMB, 2 * _WIDE, 3), np.uint8)  # one frame's nearest samples
        self.thumbs = np.empty((frames, THUMB, _WIDE, 3), np.uint8)
        self.pixels = np.empty((frames, THUMB, _WIDE * 3), np.float32)

    def sample(self, image: np.ndarray, slot: int) -> None:
        """Thumbnail `slot` of the batch from a frame, as it comes: while the frame is still in the
        CPU's caches, and small enough (4.5 KB) that a batch of them stays there."""
        cv2.resize(image, _SAMPLES, self.samples, 0, 0, cv2.INTER_NEAREST)  # positional: faster
        cv2.resize(self.samples, (_WIDE, THUMB), self.thumbs[slot], 0, 0, cv2.INTER_AREA)

    def stack(self, n: int) -> np.ndarray:
        """The first n thumbnails, (n, 32, 48 * 3) float32, as the fingerprints take them."""
        pixels = self.pixels[:n]
        pixels[...] = self.thumbs[:n].reshape(n, THUMB, _WIDE * 3)
        return pixels


def thumbnails(images: list[np.ndarray]) -> np.ndarray:
    """Both checks' view of frames, (n, 32, 48, 3) BGR uint8: each pixel the mean of 2x2 of 64x96
    nearest samples of a frame, so noise and compression artefacts wash out before any check.

    The hash and the colour signature are of a 32x32 thumbnail, its columns' area means (6
    samples a pixel: nearly as robust to shifts, noise and fades as INTER_AREA on the whole
    frame at a tenth of its cost, benchmarks/dedupe.py), taken inside their matrix products."""
    buffers = _Buffers(len(images))
    for slot, image in enumerate(images):
        buffers.sample(image, slot)
    return buffers.thumbs


def thumbnail(image: np.ndarray) -> np.ndarray:
    return thumbnails([image])[0]


def spread(thumb: np.ndarray) -> float:
    """The largest standard deviation of a thumbnail's channels (0-255 scale); blank below blank_std."""
    return cv2.minMaxLoc(cv2.meanStdDev(thumb)[1])[1]


def _blank(thumbs: np.ndarray, low: np.ndarray | None, blank_std: float) -> np.ndarray:
    """Which of a stack of thumbnails (n, 32, 48, 3) are blank; `low`: their grey DCT's
    8x8 lowest frequencies, if known.

    Those give most frames away at once: their squares but the DC's are at most 1024 times the
    32x32 grey's variance (the DCT is orthonormal), itself at most the thumbnail's (its columns'
    area means vary less) and that at most the largest channel's (grey is a weighted mean of the
    channels). Only the others are measured, one by one."""
    blank = np.zeros(len(thumbs), bool)
    doubt = range(len(thumbs))
    if low is not None:
        ac = np.einsum("ij,ij->i", low[:, 1:], low[:, 1:])
        doubt = np.flatnonzero(ac < 1.01 * THUMB * THUMB * blank_std**2).tolist()
    for i in doubt:
        blank[i] = spread(thumbs[i]) < blank_std
    return blank


def _fingerprints(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The DCT hashes (uint64), colour signatures and grey DCT's 8x8 lowest frequencies (n, 64) of
    a stack of BGR thumbnails (n, 32, 48 * 3), float32."""
    n = len(thumbs)
    # n small products, not one large one: that one would wake BLAS's threads, which spin.
    both = _LEFT @ (thumbs.reshape(n, THUMB, _WIDE * 3) @ _RIGHT)
    low = both[:, :_LOW, :_LOW].reshape(n, _LOW * _LOW)
    ordered = np.sort(low, axis=1)
    # The margin: float error must not set bits of its own where the DCT is exactly flat
    # (a flat thumbnail hashes 0x8000000000000000, as cv2.dct gives it).
    median = (ordered[:, 31:32] + ordered[:, 32:33]) * 0.5 + 0.005
    values = np.packbits(low > median, axis=1).view(">u8").ravel().astype(np.uint64)
    # Over the mean luma (the DC coefficient / 32), so a fade, scaling every value, leaves it as it was.
    luma = np.maximum(low[:, 0] * (1 / THUMB), 1.0)
    signatures = np.empty((n, _SIGNATURE), np.complex64)
    chroma = both[:, _LOW:, _LOW:] * (_CHROMA_UNIT / luma)[:, None, None]
    signatures[:, :-1] = chroma.reshape(n, 2 * CELLS * CELLS).view(np.complex64)
    signatures[:, -1] = luma
    return values, signatures, low


def fingerprints(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The DCT hashes (uint64) and colour signatures of a stack of BGR thumbnails (n, 32, 48, 3).

    A stack at a time: each numpy call costs microseconds on the decoding thread, whatever its size."""
    return _fingerprints(thumbs.astype(np.float32))[:2]


def fingerprint(thumb: np.ndarray) -> Fingerprint:
    """The DCT hash and the colour signature of a BGR thumbnail."""
    values, signatures = fingerprints(thumb[None])
    return int(values[0]), signatures[0]


def dct_hash(thumb: np.ndarray) -> int:
    """64-bit perceptual hash of a BGR thumbnail."""
    return fingerprint(thumb)[0]


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def colour_distance(a: Signature, b: Signature) -> np.ndarray:
    """Mean over the cells of the length of their chroma difference, in 0-255 levels at the darker
    frame's brightness (the brighter one dimmed to it); either may be a stack of signatures.

    At the darker frame's brightness, because chroma over luma is noisy in a dark frame (a
    level of coding error is a large share of a small luma), and dark colours look alike."""
    difference = np.add.reduce(np.abs(a[..., :-1] - b[..., :-1]), -1)
    return difference * np.minimum(a[..., -1].real, b[..., -1].real) * (1 / (_CHROMA_UNIT * CELLS * CELLS))


class HashIndex:
    """Fingerprints kept; `near` finds one that agrees with a new one in hash and colour,
    `matches` tells which for each of a stack of new ones in one pass.

    It first tries the one it last added or found near, alone: consecutive frames of a shot
    are near the same kept frame, and that is cheaper than the vectorised pass over all.
    """

    def __init__(self) -> None:
        self.hashes = np.empty(256, np.uint64)
        self.colours = np.empty((256, _SIGNATURE), np.complex64)
        self.shown = np.empty(256, np.float32)  # the luma of the frame that stands for each (Curator)
        self.count = 0
        self.last: Fingerprint | None = None  # the one last added or found near

    def add(self, value: int, colour: Signature) -> None:
        if self.count == len(self.hashes):
            self.hashes = np.concatenate([self.hashes, np.empty_like(self.hashes)])
            self.colours = np.concatenate([self.colours, np.empty_like(self.colours)])
            self.shown = np.concatenate([self.shown, np.empty_like(self.shown)])
        self.hashes[self.count], self.colours[self.count] = value, colour
        self.shown[self.count] = colour[-1].real
        self.count += 1
        self.last = value, colour

    def near(self, value: int, colour: Signature, max_distance: int, max_colour: float) -> bool:
        if self.last is None:
            return False
        last_value, last_colour = self.last
        if (value ^ last_value).bit_count() <= max_distance and colour_distance(last_colour, colour) <= max_colour:
            return True
        distances = np.bitwise_count(self.hashes[: self.count] ^ np.uint64(value))
        candidates = np.flatnonzero(distances <= max_distance)
        if candidates.size == 0:
            return False
        candidates = candidates[colour_distance(self.colours[candidates], colour) <= max_colour]
        if candidates.size == 0:
            return False
        match = candidates[distances[candidates].argmin()]
        self.last = int(self.hashes[match]), self.colours[match]
        return True

    def matches(self, values: np.ndarray, colours: np.ndarray, max_distance: int, max_colour: float) -> np.ndarray:
        """For each of a stack of fingerprints, the kept one that agrees with it (its entry), _NONE
        or _MANY, in one pass."""
        found = np.full(len(values), _NONE)
        if self.count:
            new, kept = np.nonzero(np.bitwise_count(values[:, None] ^ self.hashes[: self.count]) <= max_distance)
            if new.size:
                agree = colour_distance(colours[new], self.colours[kept]) <= max_colour
                new, kept = new[agree], kept[agree]
                found[new] = kept
                found[np.bincount(new, minlength=len(values)) > 1] = _MANY
        return found


def to_json(index: int, value: int, colour: Signature) -> list:
    """A kept frame as a manifest's "hashes" lists it: [frame index, hash hex, signature hex], the
    signature rounded to int8 (R-Y, B-Y a cell) then the mean luma as uint8: 33 bytes."""
    rounded = np.clip(np.rint(colour[:-1].view(np.float32)), -128, 127).astype(np.int8)
    luma = min(round(float(colour[-1].real)), 255)
    return [index, f"{value:016x}", rounded.tobytes().hex() + f"{luma:02x}"]


def from_json(entry: list) -> Fingerprint:
    _, value, colour = entry
    raw = bytes.fromhex(colour)
    signature = np.empty(_SIGNATURE, np.complex64)
    signature[:-1] = np.frombuffer(raw[:-1], np.int8).astype(np.float32).view(np.complex64)
    signature[-1] = raw[-1]
    return int(value, 16), signature


def repeats(videos: list[tuple[str, list[list]]], settings: FrameSettings) -> dict[str, list[int]]:
    """Frames of each video (key, manifest "hashes") near a frame an earlier video put in the
    dataset: {video key: [frame index, ...]}, for videos with any. A key listed again (the
    same video twice) is skipped, never compared with itself."""
    seen, done, found = HashIndex(), set(), {}
    for key, frames in videos:
        if key in done:
            continue
        done.add(key)
        prints = [from_json(entry) for entry in frames]
        repeated = [seen.near(*fp, settings.dedupe_distance, settings.colour_distance) for fp in prints]
        found[key] = [index for (index, *_), same in zip(frames, repeated, strict=True) if same]
        for fp, same in zip(prints, repeated, strict=True):
            if not same:
                seen.add(*fp)
    return {key: indices for key, indices in found.items() if indices}


class Curator:
    """Which sampled frames of one video are kept, decided in frame order, and the counts.

    A frame near no kept frame is kept; a near-duplicate of the frame kept last that is
    BRIGHTER than what stands for it takes its place (`replaces`: the writer holds the last
    record back for this); any other near-duplicate is dropped.

    Segments read concurrently (tasks/shards.py): a later segment's thread calls `prefilter`,
    which drops its blank frames and the duplicates of frames already kept that could not take
    one's place (those are before it in the video, so one pass would drop them too) and leaves
    the rest to `admit`, called in frame order when the segments are joined. The shards are
    those of one pass.
    """

    def __init__(self, settings: FrameSettings) -> None:
        self.settings = settings
        self.kept = HashIndex()
        self.kept_frames: list[tuple[int, int, Signature]] = []  # (frame index, hash, colour), with dedupe
        self.held: int | None = None  # the entry of the frame kept last
        self.replacing: set[int] = set()  # frames that took the place of the one kept before them
        self.lock = threading.Lock()
        self.sampled = self.blank = self.duplicate = 0

    @property
    def active(self) -> bool:
        return self.settings.dedupe or self.settings.drop_blank

    def replaces(self, index: int) -> bool:
        """Whether frame `index` takes the place of the kept frame written before it."""
        return index in self.replacing

    def _batches(self, frames: Iterable[Frame]) -> Iterator[_Batch]:
        """Frames up to _BATCH at a time, each batch with, per frame: blank (and dropped), its hash
        and colour signature (with dedupe), the frame kept before the batch it is near (`match`),
        and whether it is BRIGHTER than that one.

        Each frame is sampled as it comes; the rest goes a batch at a time, as each numpy or
        OpenCV call costs microseconds on the decoding thread whatever its size."""
        buffers, size = _Buffers(_BATCH), _BATCH
        batch: list[Frame] = []
        for frame in frames:
            if not batch:
                size = max(1, min(_BATCH, _BATCH_BYTES // max(frame.image.nbytes, 1)))
            buffers.sample(frame.image, len(batch))
            batch.append(frame)
            if len(batch) < size:
                continue
            yield self._decide(batch, buffers)
            batch = []
        if batch:
            yield self._decide(batch, buffers)

    def _decide(self, frames: list[Frame], buffers: _Buffers) -> _Batch:
        settings, n = self.settings, len(frames)
        thumbs = buffers.stack(n)
        match, brighter, low = np.full(n, _NONE), np.zeros(n, bool), None
        if settings.dedupe:
            values, signatures, low = _fingerprints(thumbs)  # blank ones too: cheaper than leaving them out
        else:
            values, signatures = np.zeros(n, np.uint64), np.zeros((n, _SIGNATURE), np.complex64)
        blank = _blank(buffers.thumbs[:n], low, settings.blank_std) if settings.drop_blank else np.zeros(n, bool)
        with self.lock:
            self.sampled += n
            self.blank += int(blank.sum())
            if settings.dedupe:
                # A frame near a kept one is a near-duplicate, whatever is kept after it.
                match = self.kept.matches(values, signatures, settings.dedupe_distance, settings.colour_distance)
                match[blank] = _NONE
                one = match >= 0
                brighter[one] = signatures[one, -1].real > BRIGHTER * self.kept.shown[match[one]]
                self.duplicate += int((match != _NONE).sum() - brighter.sum())  # those: where they are placed
        return frames, blank, values, signatures, match, brighter

    def _place(self, index: int, fp: Fingerprint, match: int) -> str:
        """KEEP, REPLACE or DROP frame `index`, near the kept frame `match` (_NONE, _MANY); in frame
        order, with the lock held. Counts nothing: a replacement drops the frame it replaces."""
        if match == _NONE:
            self.kept.add(*fp)
            self.kept_frames.append((index, *fp))
            self.held = self.kept.count - 1
            return KEEP
        luma = fp[1][-1].real
        if match == self.held and luma > BRIGHTER * self.kept.shown[match]:
            # Matching stays with the first frame's fingerprint: only what is written changes.
            self.kept_frames[-1] = (index, *fp)
            self.kept.shown[match] = luma
            self.replacing.add(index)
            return REPLACE
        return DROP

    def admit(self, fp: Fingerprint, index: int) -> str:
        """KEEP, REPLACE or DROP frame `index` (one `prefilter` left); call in frame order only."""
        settings = self.settings
        if not settings.dedupe:
            return KEEP
        with self.lock:
            value, colour = fp
            match = int(self.kept.matches(np.array([value], np.uint64), colour[None], settings.dedupe_distance,
                                          settings.colour_distance)[0])  # fmt: skip
            self.duplicate += match != _NONE
            return self._place(index, fp, match)

    def filter(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """The frames to write, in order: those kept, and those that take a kept one's place."""
        if not self.active:
            yield from self.count_all(frames)
            return
        for batch, blank, values, signatures, match, brighter in self._batches(frames):
            if not self.settings.dedupe:
                yield from (batch[i] for i in np.flatnonzero(~blank).tolist())
            else:
                yield from self._settle(batch, blank, values, signatures, match, brighter)

    def _settle(
        self, batch: list[Frame], blank: np.ndarray, values: np.ndarray, signatures: np.ndarray, match: np.ndarray,
        brighter: np.ndarray,
    ) -> list[Frame]:  # fmt: skip
        """A batch's frames to write, in order. Those near no frame kept before the batch are
        compared with each other: each near none chosen before it is kept, the others are
        duplicates (counted), of one chosen frame or more. Then, in frame order, the frames kept
        and those that may take the place of the one kept last (near one kept frame, brighter)."""
        settings = self.settings
        rest = np.flatnonzero(~blank & (match == _NONE))
        luma = signatures[:, -1].real
        chosen: list[int] = []  # positions in `rest`
        maybe = np.flatnonzero(brighter).tolist()  # known duplicates that may take a place
        of: dict[int, int] = {}  # a batch frame near exactly one chosen frame before it: that one
        if rest.size:
            near = np.bitwise_count(values[rest, None] ^ values[rest]) <= settings.dedupe_distance
            near &= colour_distance(signatures[rest, None], signatures[rest]) <= settings.colour_distance
            near = near.tolist()
            for k in range(len(rest)):
                hits = [j for j in chosen if near[k][j]]
                if not hits:
                    chosen.append(k)
                elif len(hits) == 1 and luma[rest[k]] > BRIGHTER * luma[rest[hits[0]]]:
                    of[int(rest[k])] = int(rest[hits[0]])
        kept = {int(rest[k]) for k in chosen}
        entry: dict[int, int] = {}  # a frame kept here: its entry in the index
        out = []
        with self.lock:
            self.duplicate += len(rest) - len(chosen) + len(maybe)  # a replacement drops the frame it replaces
            for i in sorted(kept.union(maybe, of)):
                if i in kept:
                    near_entry = _NONE
                elif i in of:
                    near_entry = entry[of[i]]  # kept above: it comes first
                else:
                    near_entry = int(match[i])
                decision = self._place(batch[i].index, (int(values[i]), signatures[i]), near_entry)
                if decision == KEEP:
                    entry[i] = self.kept.count - 1
                if decision != DROP:
                    out.append(batch[i])
        return out

    def prefilter(self, frames: Iterable[Frame], pending: dict[int, Fingerprint]) -> Iterator[Frame]:
        """A later segment's frames that may be kept or take a kept one's place; their fingerprints
        go to `pending` by frame index."""
        if not self.active:
            yield from self.count_all(frames)
            return
        for batch, blank, values, signatures, match, brighter in self._batches(frames):
            for i in np.flatnonzero(~blank & ((match == _NONE) | brighter)).tolist():
                pending[batch[i].index] = int(values[i]), signatures[i]
                yield batch[i]

    def count_all(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        for frame in frames:
            with self.lock:
                self.sampled += 1
            yield frame

    def manifest_hashes(self) -> list[list]:
        """Each kept frame's fingerprint, as the manifest lists them (with dedupe; else none)."""
        return [to_json(*kept) for kept in self.kept_frames]

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
