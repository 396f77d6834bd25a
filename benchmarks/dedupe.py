"""How far apart the DCT hashes and colour signatures of the same image and of different
images fall: what dedupe_distance, colour_distance and blank_std are chosen by (docs/curation.md).

    python -m benchmarks.dedupe

Same image: every 10th frame of the three shared sample clips at ingest's default size (and,
for colour, demo scenes), against itself re-encoded, shifted by 2 px, faded and with noise.
Different images: mirror images, the other clips' frames, complementary colours, other demo
scenes; within one clip, frames 1 s and 5 s apart. Also the thumbnail spread (blank_std) of
real frames and of a fade to black; the frames curation keeps of benchmarks/quality.py's data
(every frame at 32x56) by dedupe_distance; and what finding frames that repeat another video
costs ingest on a 1,000-video dataset (`--across` alone: just that). `--kept` alone: what
ingest's shard step keeps of the quality data, the demo flow's clips and the sample clips.
"""

from __future__ import annotations

import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

from synthwave.settings import FrameSettings
from tasks.curate import Curator, colour_distance, dct_hash, distance, fingerprint, repeats, spread, thumbnail
from tasks.demo import render_demo_videos, render_frame
from tasks.curate import CurationError
from tasks.frames import iter_frames
from tasks.shards import write_video_shards

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
CLIPS = ["bottle-detection.mp4", "milk.mkv", "book.mkv"]
RAW_CURATION = {"dedupe": False, "drop_blank": False}
RAW = FrameSettings(every=1, **RAW_CURATION)


def _variants(image: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    height, width = image.shape[:2]
    shift = cv2.warpAffine(image, np.float32([[1, 0, 2], [0, 1, 2]]), (width, height), borderMode=cv2.BORDER_REPLICATE)
    noise = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_COLOR)
    fade = {f"fade x{k}": (image * k).round().astype(np.uint8) for k in (0.5, 0.2)}
    return {"jpeg q30": jpeg, "shift 2px": shift, "noise sd6": noise, **fade}


def _hash(image: np.ndarray) -> int:
    return dct_hash(thumbnail(image))


def _summary(values: list[float]) -> str:
    a = np.array(values)
    low, mid, high = np.percentile(a, [1, 50, 99])
    return f"n={len(a):5d} min {a.min():5.1f}  p1 {low:5.1f}  median {mid:5.1f}  p99 {high:5.1f}  max {a.max():5.1f}"


def _complementary(image: np.ndarray) -> np.ndarray:
    """The same luma, every chroma negated: one structure in other colours."""
    ycrcb = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.int16)
    ycrcb[..., 1:] = 256 - ycrcb[..., 1:]
    return cv2.cvtColor(np.clip(ycrcb, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2BGR)


def colour(clips: dict[str, list[np.ndarray]]) -> None:
    """colour_distance of an image and its variants, and between different demo scenes."""
    demo = [render_frame(180, 320, 0.0, scene) for scene in range(60)]  # ingest's half of the 360x640 clips
    print("\ncolour distance (4x4 cells' mean chroma difference, 0-255 levels at the darker frame's brightness)")
    for group, images in {"sample clips": [im for ims in clips.values() for im in ims], "demo scenes": demo}.items():
        same: dict[str, list[float]] = {}
        for image in images:
            own = fingerprint(thumbnail(image))[1]
            dark = (image * 0.1).round().astype(np.uint8)
            jpeg = cv2.imdecode(cv2.imencode(".jpg", dark, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], cv2.IMREAD_COLOR)
            variants = {**_variants(image), "fade x0.1, jpeg q75": jpeg, "complementary colours": _complementary(image)}
            for label, variant in variants.items():
                same.setdefault(label, []).append(float(colour_distance(own, fingerprint(thumbnail(variant))[1])))
        print(f"{group}, against:")
        for label, values in same.items():
            print(f"  {label:<22} {_summary(values)}")
    # Different scenes at the demo flow's size (48x80), all pairs and those whose hashes are near.
    scenes = [cv2.resize(render_frame(180, 320, 0.0, n), (80, 48), interpolation=cv2.INTER_AREA) for n in range(150)]
    prints = [fingerprint(thumbnail(image)) for image in scenes]
    pairs = [  # (hash bits, colour)
        (distance(a[0], b[0]), float(colour_distance(a[1], b[1])))
        for i, a in enumerate(prints) for b in prints[:i]
    ]
    print(f"  {'150 scenes, all pairs':<22} {_summary([c for _, c in pairs])}")
    near = [c for bits, c in pairs if bits <= FrameSettings().dedupe_distance]
    print(f"  {'pairs of near hashes':<22} {_summary(near)}")
    shot = [fingerprint(thumbnail(render_frame(180, 320, n / 24, 3)))[1] for n in range(0, 72, 4)]
    print(f"  {'one shot over 3 s':<22} {_summary([float(colour_distance(shot[0], c)) for c in shot[1:]])}")


def across_videos(videos: int = 1000, frames: int = 300) -> None:
    """tasks.curate.repeats over `videos` of `frames` kept frames each (random hashes: none
    repeats, so every frame is compared with all before it, the worst case)."""
    rng = np.random.default_rng(0)
    grey = "00" * 32 + "40"  # one colour signature for all: only the hashes tell frames apart
    dataset = [
        (f"v{n}", [[i, f"{int(v):016x}", grey] for i, v in enumerate(rng.integers(0, 2**63, frames, dtype=np.int64))])
        for n in range(videos)
    ]
    start = time.perf_counter()
    found = repeats(dataset, FrameSettings())
    seconds = time.perf_counter() - start
    matched = sum(len(indices) for indices in found.values())
    print(
        f"\nrepeats across {videos} videos x {frames} kept frames: {seconds:.1f} s; "
        f"false matches: {matched} frames of {len(found)} videos"
    )


def main() -> None:
    if sys.argv[1:] == ["--across"]:
        across_videos()
        return
    if sys.argv[1:] == ["--kept"]:
        kept()
        return
    missing = [name for name in CLIPS if not (VIDEOS / name).is_file()]
    if missing:
        sys.exit(f"{VIDEOS}: {', '.join(missing)} missing: the measurement needs the shared sample clips")
    frames = {name: [f.image for f in iter_frames(VIDEOS / name, RAW)] for name in CLIPS}
    sampled = {name: images[::10] for name, images in frames.items()}
    same: dict[str, list[int]] = {}
    for images in sampled.values():
        for image in images:
            for label, variant in _variants(image).items():
                same.setdefault(label, []).append(distance(_hash(image), _hash(variant)))
    hashes = {name: [_hash(image) for image in images] for name, images in sampled.items()}
    mirror = [distance(_hash(im), _hash(im[:, ::-1])) for images in sampled.values() for im in images]
    across = {
        f"{x[:6]} vs {y[:6]}": [distance(a, b) for a in hashes[x] for b in hashes[y]] for x, y in combinations(CLIPS, 2)
    }
    print("Hamming distance of 64-bit DCT hashes, frames at ingest's default size (half)\n")
    print("same image:")
    for label, values in same.items():
        print(f"  {label:<22} {_summary(values)}")
    print(f"  {'all of the above':<22} {_summary([v for values in same.values() for v in values])}")
    print("different images:")
    print(f"  {'mirror image':<22} {_summary(mirror)}")
    for label, values in across.items():
        print(f"  {label:<22} {_summary(values)}")
    for name, images in frames.items():
        all_hashes = [_hash(image) for image in images]
        for gap_s in (1, 5):
            gap = 30 * gap_s
            values = [distance(all_hashes[i], all_hashes[i + gap]) for i in range(0, len(images) - gap, 5)]
            if values:
                print(f"  {name} {gap_s} s apart".ljust(24) + " " + _summary(values))
    spreads = [spread(thumbnail(im)) for images in frames.values() for im in images]
    low = np.percentile(spreads, 1)
    print(f"\nthumbnail spread (largest channel std) of real frames: min {min(spreads):.1f}, p1 {low:.1f}")
    image = sampled["bottle-detection.mp4"][0]
    fade = [spread(thumbnail((image * k).round().astype(np.uint8))) for k in (0.2, 0.1, 0.05)]
    print("fade to black, frame x0.2 / x0.1 / x0.05: spread " + " / ".join(f"{v:.1f}" for v in fade))
    colour(sampled)
    quality_data()
    across_videos()


def quality_data(distances: tuple[int, ...] = (0, 2, 4, 6, 8, 10)) -> None:
    """Frames kept of benchmarks/quality.py's videos at every=1, 32x56, by dedupe_distance."""
    with tempfile.TemporaryDirectory() as tmp:
        videos = render_demo_videos(Path(tmp), count=4) + [VIDEOS / name for name in CLIPS]
        print(f"\nkept of benchmarks/quality.py's data (every=1, 32x56) by dedupe_distance {distances}:")
        totals = [0] * (len(distances) + 1)
        for video in videos:
            frames = list(iter_frames(video, FrameSettings(every=1, size=(32, 56), **RAW_CURATION)))
            kept = [len(frames)]
            for max_distance in distances:
                curator = Curator(FrameSettings(every=1, size=(32, 56), dedupe_distance=max_distance))
                kept.append(sum(1 for _ in curator.filter(frames)))
            totals = [a + b for a, b in zip(totals, kept, strict=True)]
            print(f"  {video.name:<22} raw {kept[0]:5d}  kept " + " ".join(f"{n:5d}" for n in kept[1:]))
        print(f"  {'all':<22} raw {totals[0]:5d}  kept " + " ".join(f"{n:5d}" for n in totals[1:]))


def kept() -> None:
    """Frames write_video_shards keeps raw, curated, and curated by the hash alone, per video;
    then the frames a video repeats of those before it (tasks.curate.repeats)."""
    clips = [VIDEOS / name for name in CLIPS]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = {
            "benchmarks/quality.py's data, every=1, 32x56": (
                render_demo_videos(work / "quality", count=4) + clips, FrameSettings(every=1, size=(32, 56))),
            "the demo flow's clips, every=12, 48x80": (
                render_demo_videos(work / "demo", count=8, shots=48, shot_frames=12, size=(180, 320)),
                FrameSettings(every=12, size=(48, 80))),
            "the sample clips, every=1, default size": (clips, FrameSettings(every=1)),
        }  # fmt: skip
        for label, (videos, settings) in sets.items():
            print(f"\n{label}: raw / curated / hash alone (refused: one image or blank)")
            variants = {"raw": settings.model_copy(update=RAW_CURATION), "curated": settings,
                        "hash alone": settings.model_copy(update={"colour_distance": float("inf")})}  # fmt: skip
            totals, hashes = dict.fromkeys(variants, 0), []
            for n, video in enumerate(videos):
                counts = []
                for name, variant in variants.items():
                    try:
                        out = work / f"{name}-{n}".replace(" ", "")
                        manifest = write_video_shards(video, f"v{n}", variant, 100, out)
                    except CurationError:
                        counts.append("refused")
                        continue
                    counts.append(str(manifest["frames"]))
                    totals[name] += manifest["frames"]
                    if name == "curated":
                        hashes.append((video.name, manifest["hashes"]))
                print(f"  {video.name:<40} " + " / ".join(counts))
            found = {key: len(indices) for key, indices in repeats(hashes, settings).items()}
            print(f"  {'all (refused: 0)':<40} " + " / ".join(str(v) for v in totals.values()) + f"; repeats {found}")


if __name__ == "__main__":
    main()
