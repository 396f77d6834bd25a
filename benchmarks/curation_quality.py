"""Does curation help the GAN? One recipe trained on synthwave-like mixes ingested raw and curated.

    python -m benchmarks.curation_quality                        # ~10 min on a 2-core CPU
    python -m benchmarks.curation_quality --seeds 1 --steps 300  # a quick look

The mixes are what issue 21 describes: each video a title card, a black intro, then a loop of
demo scenes (tasks/demo.py) played over and over (--loops: a count a video, so that raw
sampling over-represents the longest mixes' scenes), each loop faded in from black and out to
it, and a black outro. The datasets come from the same videos through the real ingest flow:
raw (--no-dedupe --keep-blank, the article's sampling), blank frames dropped only
(--no-dedupe), curated (the defaults) and curated with --dedupe-distance 4. Every run is
scored against one reference, each scene of the mixes once (a clip of them, no cards, fades
or black, ingested the same way): SWD x1e3 between it and as many samples of the final
generator (mean over --draws sample sets, the same latent vectors for every run), MS-SSIM
among the samples, and the share of samples darker than any scene (what fades and black
frames teach). Writes the first seed's two grids side by side to --out.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.quality import REPO, final_quality, side_by_side
from flows.ingest import ingest
from gan.index import load_index
from gan.loop import restore, run_training, samples
from gan.metrics import ms_ssim_diversity
from synthwave.settings import FrameSettings, IngestSettings, TrainSettings
from tasks.demo import render_frame, write_clip
from tasks.frames import iter_frames

FPS, SIZE, RENDER = 12, (32, 56), (180, 320)
SCENES, SHOT_S, FADE_S = 6, 2.0, 1.0  # a video's loop: SCENES shots of SHOT_S, faded in and out
RAW = {"dedupe": False, "drop_blank": False}
DATASETS = {"raw": RAW, "blank only": {"dedupe": False}, "curated": {}, "distance 4": {"dedupe_distance": 4}}


def _mix(video: int, loops: int):
    """A title card (the video's number on a flat colour), 1 s black, the loop `loops` times, 1 s black."""
    height, width = RENDER
    card = np.full((height, width, 3), (90, 40, 120), np.uint8)
    cv2.putText(card, f"MIX {video + 1}", (60, height // 2 + 15), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 3)
    black = np.zeros_like(card)
    yield from [card] * (2 * FPS) + [black] * FPS
    shot = int(SHOT_S * FPS)
    loop = [render_frame(height, width, n / FPS, video * SCENES + s) for s in range(SCENES) for n in range(shot)]
    ramp = np.minimum(1.0, np.minimum(np.arange(len(loop)) + 1, len(loop) - np.arange(len(loop))) / (FADE_S * FPS))
    for _ in range(loops):
        yield from ((frame * level).round().astype(np.uint8) for frame, level in zip(loop, ramp, strict=True))
    yield from [black] * FPS


def _scenes(videos: int):
    """Every scene of the mixes, each over its shot, and nothing else: the reference."""
    shot = int(SHOT_S * FPS)
    for scene in range(videos * SCENES):
        yield from (render_frame(*RENDER, n / FPS, scene) for n in range(shot))


def reference(root: Path, videos: int) -> np.ndarray:
    """The scenes as ingest gives them (crop, resize), RGB in [-1, 1]."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    video = write_clip(root / "videos" / f"scenes-{videos}.mp4", _scenes(videos), FPS, RENDER)
    frames = iter_frames(video, FrameSettings(every=1, size=SIZE, **RAW))
    return np.stack([cv2.cvtColor(f.image, cv2.COLOR_BGR2RGB) for f in frames]).astype(np.float32) / 127.5 - 1


def datasets(root: Path, loops: list[int], every: int) -> dict[str, Path]:
    videos = root / "videos"
    sources = [str(write_clip(videos / f"mix-{v}-x{n}.mp4", _mix(v, n), FPS, RENDER)) for v, n in enumerate(loops)]
    data = {}
    for name, curation in DATASETS.items():
        data[name] = root / f"data-{name.replace(' ', '-')}"
        ingest(sources, IngestSettings(data_dir=data[name], frames=FrameSettings(every=every, size=SIZE, **curation)))
    return data


def mean_luma(images: np.ndarray) -> np.ndarray:
    """Each image's (RGB in [-1, 1]) mean luma, 0-255."""
    return ((images + 1) * 127.5 @ np.array([0.299, 0.587, 0.114], np.float32)).mean(axis=(1, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="videos, data and run dirs (default: a fresh temp dir)")
    parser.add_argument("--steps", type=int, default=2000, help="per run")
    parser.add_argument("--seeds", type=int, default=2, help="runs of each dataset")
    parser.add_argument("--loops", default="1,2,4,12", help="times each mix plays its loop, a count a video")
    parser.add_argument("--every", type=int, default=3, help="keep every Nth frame (12 fps videos)")
    parser.add_argument("--draws", type=int, default=8, help="sample sets the final SWD is averaged over")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "curation-grids.png")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="synthwave-curation-"))
    start = time.perf_counter()
    loops = [int(n) for n in args.loops.split(",")]
    real = reference(root, len(loops))
    real_ms_ssim = ms_ssim_diversity(real)
    floor = float(mean_luma(real).min())
    noise = np.random.default_rng(0).normal(size=(len(real), TrainSettings().model.latent_dim)).astype(np.float32)
    data = datasets(root, loops, args.every)
    print(f"reference: {len(real)} frames of {len(loops) * SCENES} scenes, MS-SSIM {real_ms_ssim:.3f}, darkest mean "
          f"luma {floor:.1f}", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in data}
    grids = {}
    for seed in range(args.seeds):
        for name, data_dir in data.items():
            index = load_index(data_dir)
            settings = TrainSettings(
                data_dir=data_dir, run_dir=root / f"run-{data_dir.name}-{seed}", seed=seed, steps=args.steps,
                batch_size=32, g_filters=128, d_filters=32, eval_every=args.steps, eval_frames=len(real),
                sample_every=args.steps, checkpoint_every=args.steps, jit_compile="off",
            )  # fmt: skip
            began = time.perf_counter()
            final = run_training(settings, index.shards, index.shape, index.frames, holdout=index.holdout)
            quality = final_quality(settings.run_dir, real, real_ms_ssim, args.draws, None)
            dark = float((mean_luma(samples(restore(settings.run_dir), noise)) < floor / 2).mean())
            results[name].append({"swd": quality["swd_mean"], "ms_ssim": quality["ms_ssim"], "dark": dark})
            if seed == 0:
                grids[f"{name}, {index.frames} frames: SWD {quality['swd_mean']:.1f}"] = final.run.latest_grid
            print(f"  {name:10s} seed {seed}: {index.frames} frames, SWD {quality['swd_mean']:6.2f} +- "
                  f"{quality['swd_std']:4.1f}, MS-SSIM {quality['ms_ssim']:.3f}, dark {dark:.0%}, "
                  f"{time.perf_counter() - began:.0f} s", flush=True)
    print(f"\n{args.steps} steps, {args.seeds} seed(s), every={args.every}, loops {args.loops}, against the "
          f"{len(real)} scene frames (dark: mean luma below {floor / 2:.1f}, half the darkest scene's):")
    for name, runs in results.items():
        swds = [r["swd"] for r in runs]
        print(f"  {name:10s} SWD mean {statistics.mean(swds):6.2f} (min {min(swds):.2f}, max {max(swds):.2f}), "
              f"MS-SSIM {statistics.mean(r['ms_ssim'] for r in runs):.3f}, "
              f"dark samples {statistics.mean(r['dark'] for r in runs):.0%}")
    mean = {name: statistics.mean(r["swd"] for r in runs) for name, runs in results.items()}
    print("  SWD against raw's: " + ", ".join(f"{name} {swd / mean['raw']:.2f}" for name, swd in mean.items()))
    print(f"grids: {side_by_side(grids, args.out)}\nwall time: {time.perf_counter() - start:.0f} s (root {root})")


if __name__ == "__main__":
    main()
