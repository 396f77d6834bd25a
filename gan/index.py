"""The dataset index written by ingest (data_dir/dataset.json): which shards to train on,
and which of their frames are held out for evaluation.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from synthwave.atomic import write_json
from synthwave.digest import file_sha256
from synthwave.errors import UserError

_VERIFIED = ".verified.json"  # in data_dir: shard -> [size, mtime_ns, sha256] when it last matched


class DatasetError(UserError, ValueError):
    """The shard set cannot be trained on; the message says why and what to do."""


@dataclass(frozen=True)
class Holdout:
    """Frames held out of training, to measure samples against (SWD, MS-SSIM).

    A frame is held out when fingerprint64("<video_key>/<frame_index>") % 1000 < per_mille
    (FarmHash Fingerprint64, TF's `to_hash_bucket_fast`, stable across versions; gan/data.py
    applies it). Why a hash and not the last 10% of each video: a GAN is judged on how well
    its samples match the distribution of frames, and a video's tail is a biased sample of it
    (one scene, one phase of a demo clip's sun); hashed frames are spread over every video's
    whole length. A frame's side depends only on its own key and index, so re-ingesting a
    video with more frames never moves a frame across. Near-duplicate neighbours of a held-out
    frame are trained on: SWD measures distribution match, not generalisation, so that is the
    accepted cost. ingest writes the rule into dataset.json, which makes the split part of
    the dataset rather than of a run; a dataset.json from before the record gets the same rule.

    `excluded` ("<video_key>/<frame_index>") are in neither split: frames that repeat another
    video of the dataset (dataset.json's "excluded", tasks/curate.py's `repeats`).
    """

    per_mille: int = 100
    rule: str = "fingerprint64(video_key/frame_index) % 1000 < per_mille"
    excluded: frozenset[str] = frozenset()

    def to_json(self) -> dict:
        return {"rule": self.rule, "per_mille": self.per_mille}


@dataclass(frozen=True)
class DatasetIndex:
    shards: list[str]
    shape: tuple[int, int, int]
    frames: int
    holdout: Holdout = Holdout()
    manifests: tuple[str, ...] = ()  # one per video: what its shards must hold


def _holdout(path: Path, record: dict | None, excluded: dict[str, list[int]]) -> Holdout:
    names = frozenset(f"{key}/{index}" for key, indices in excluded.items() for index in indices)
    if record is None:
        return Holdout(excluded=names)
    if record.get("rule") != Holdout.rule or not 0 <= record.get("per_mille", -1) < 1000:
        raise DatasetError(f"{path} has a holdout record this version cannot apply ({record}): rerun ingest")
    return Holdout(per_mille=record["per_mille"], excluded=names)


def load_index(data_dir: Path) -> DatasetIndex:
    path = data_dir / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"{path} not found: run `synthwave ingest --data-dir {data_dir} ...` first")
    try:
        index = json.loads(path.read_text())
        videos = index.get("videos", [])
        shards = [_inside(data_dir, path, shard) for video in videos for shard in video["shards"]]
        manifests = tuple(_inside(data_dir, path, video["manifest"]) for video in videos)
        frames, shapes = index["frames"], {tuple(video["shape"]) for video in videos}
    except DatasetError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path} is not a dataset index ({type(exc).__name__}: {exc}): rerun ingest") from None
    if not shards or frames == 0:
        raise DatasetError(f"{path} lists no frames: ingest at least one video that succeeds")
    missing = [shard for shard in shards if not Path(shard).is_file()]
    if missing:
        raise DatasetError(f"{path} lists {len(missing)} missing shard(s), e.g. {missing[0]}: rerun ingest")
    if len(shapes) > 1:
        raise DatasetError(f"{path} mixes image sizes ({mixed_sizes(videos)}): {ONE_SIZE}")
    holdout = _holdout(path, index.get("holdout"), index.get("excluded", {}))
    return DatasetIndex(shards=shards, shape=shapes.pop(), frames=frames, holdout=holdout, manifests=manifests)


# What to change, as typed on the command line and as found in the UI's run form.
ONE_SIZE = "re-ingest with one size for all: --size HxW on the command line, settings -> frames -> size in the UI"


def mixed_sizes(videos: list[dict]) -> str:
    """dataset.json's videos by frame size, each by title ("180x320: a; 240x320: b, c"); "" when one size."""
    titles: dict[str, list[str]] = {}
    for video in videos:
        height, width = video["shape"][:2]
        titles.setdefault(f"{height}x{width}", []).append(video.get("title") or video["key"])
    if len(titles) < 2:
        return ""
    return "; ".join(f"{size}: {', '.join(names)}" for size, names in titles.items())


def _inside(data_dir: Path, index: Path, relative: str) -> str:
    """`relative` under data_dir; a path that leads out of it (../, absolute) is refused."""
    path = data_dir / relative
    if not path.resolve().is_relative_to(data_dir.resolve()):
        raise DatasetError(f"{index} lists {relative!r}, outside {data_dir}: rerun ingest to rewrite it")
    return str(path)


def verify_shards(data_dir: Path, index: DatasetIndex) -> None:
    """Refuse, naming the file, a shard that is not what its manifest says, before training
    reads it: its size first, then its sha256 where the file changed since it last matched
    (recorded in data_dir/.verified.json, so a rerun hashes only what changed; a read-only
    data folder just hashes every time)."""
    record_path = data_dir / _VERIFIED
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    fresh = {}
    for manifest_path in map(Path, index.manifests):
        try:
            listed = json.loads(manifest_path.read_text())["shards"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"manifest {manifest_path} is unreadable ({exc}): {_REINGEST}") from None
        for shard in listed:
            path = manifest_path.parent / shard["file"]
            key = str(path.relative_to(data_dir))
            fresh[key] = _verified(path, shard, record.get(key))
    if fresh != record:
        with contextlib.suppress(OSError):
            write_json(record_path, fresh)


_REINGEST = "rerun `synthwave ingest` with the same sources and settings, which rewrites it"


def _verified(path: Path, shard: dict, last: list | None) -> list:
    """[size, mtime_ns, sha256] of a shard that matches its manifest entry; DatasetError if not."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise DatasetError(f"shard {path} is missing ({exc.strerror}): {_REINGEST}") from None
    if stat.st_size != shard["bytes"]:
        raise DatasetError(
            f"shard {path} is damaged ({stat.st_size} bytes, its manifest says {shard['bytes']}): {_REINGEST}"
        )
    seen = [stat.st_size, stat.st_mtime_ns, shard["sha256"]]
    if last != seen and file_sha256(path) != shard["sha256"]:
        raise DatasetError(f"shard {path} is damaged (its sha256 is not its manifest's): {_REINGEST}")
    return seen
