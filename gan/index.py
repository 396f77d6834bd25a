"""The dataset index written by ingest (data_dir/dataset.json): which shards to train on,
and which of their frames are held out for evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from synthwave.errors import UserError


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
    index = json.loads(path.read_text())
    videos = index.get("videos", [])
    shards = [str(data_dir / shard) for video in videos for shard in video["shards"]]
    if not shards or index["frames"] == 0:
        raise DatasetError(f"{path} lists no frames: ingest at least one video that succeeds")
    missing = [shard for shard in shards if not Path(shard).is_file()]
    if missing:
        raise DatasetError(f"{path} lists {len(missing)} missing shard(s), e.g. {missing[0]}: rerun ingest")
    shapes = {tuple(video["shape"]) for video in videos}
    if len(shapes) > 1:
        sizes = ", ".join(f"{v['key']}: {v['shape'][0]}x{v['shape'][1]}" for v in videos)
        raise DatasetError(f"{path} mixes image sizes ({sizes}): re-ingest with --size HxW")
    holdout = _holdout(path, index.get("holdout"), index.get("excluded", {}))
    return DatasetIndex(shards=shards, shape=shapes.pop(), frames=index["frames"], holdout=holdout)
