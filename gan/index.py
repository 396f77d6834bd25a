"""The dataset index written by ingest (data_dir/dataset.json): which shards to train on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """The shard set cannot be trained on; the message says why and what to do."""


@dataclass(frozen=True)
class DatasetIndex:
    shards: list[str]
    shape: tuple[int, int, int]
    frames: int


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
    return DatasetIndex(shards=shards, shape=shapes.pop(), frames=index["frames"])
