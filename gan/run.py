"""The run directory: its layout, the configuration it was made with, and its lock.

    run_dir/
      config.json          the model group of the settings + image shape: rebuilds the model; a resume must match
      checkpoints/         tf.train.CheckpointManager (last K kept)
      samples/             grid-00000100.png ... from one fixed noise tensor, latest.png
      history.parquet      one row per step
      loss.png             seaborn loss plot
      quality.png          SWD and MS-SSIM of samples vs held-out frames, per evaluation
      tensorboard/         summaries
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from synthwave.atomic import write_json
from synthwave.errors import UserError
from synthwave.settings import ModelSettings


# Model settings added after run dirs existed, at the value those runs were made with.
_LEGACY_MODEL_SETTINGS = {"spectral_norm": False, "augment": "", "minibatch_std": False}


class RunDirError(UserError, RuntimeError):
    """The run directory cannot be used for this run (in use, or another configuration)."""


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def history(self) -> Path:
        return self.root / "history.parquet"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def quality_plot(self) -> Path:
        return self.root / "quality.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def grid(self, step: int) -> Path:
        return self.samples / f"grid-{step:08d}.png"

    @property
    def latest_grid(self) -> Path:
        return self.samples / "latest.png"

    def claim(self, model: ModelSettings, image_shape: tuple[int, int, int]) -> None:
        """Record the model's configuration on first use; refuse a different one on resume."""
        wanted = {"image_shape": list(image_shape), "model_settings": model.model_dump(mode="json")}
        if self.config.exists():
            found = self.load_config()
            if found != wanted:
                raise RunDirError(
                    f"run dir {self.root} was made for images {found['image_shape']} with "
                    f"{found['model_settings']}; this run has {wanted['image_shape']} with "
                    f"{wanted['model_settings']}: use another --run-dir"
                )
            return
        write_json(self.config, wanted)

    def load_config(self) -> dict:
        if not self.config.exists():
            raise RunDirError(f"{self.root} has no config.json: it is not a training run directory")
        config = json.loads(self.config.read_text())
        config["model_settings"] = {**_LEGACY_MODEL_SETTINGS, **config["model_settings"]}
        return config

    def lock(self) -> int:
        """Hold an exclusive lock for the life of the process: two trainings never interleave."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode().strip() or "another process"
            os.close(fd)
            raise RunDirError(f"run dir {self.root} is in use by pid {holder}: wait for it or use another --run-dir")
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

