"""tasks/png.py writes PNGs every decoder reads back bit-exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from tasks.png import encode_png
from tests.loopback import SAMPLE_VIDEOS


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [
        rng.integers(0, 256, (37, 53, 3), np.uint8),  # odd sides, incompressible
        np.zeros((8, 8, 3), np.uint8),
        np.full((1, 5, 3), 255, np.uint8),  # a single row: only the first-row path
    ]
    capture = cv2.VideoCapture(str(SAMPLE_VIDEOS / "bottle-detection.mp4"))
    ok, frame = capture.read()
    if ok:
        out.append(cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA))
    return out


@pytest.mark.parametrize("image", frames(), ids=lambda image: "x".join(map(str, image.shape)))
def test_opencv_and_pillow_decode_the_same_pixels(image, tmp_path):
    data = encode_png(image)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), image)
    path = tmp_path / "frame.png"
    path.write_bytes(data)
    with Image.open(path) as decoded:  # Pillow checks every chunk's CRC
        decoded.load()
        assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), image[..., ::-1])


def test_a_video_frame_compresses_like_opencv_png():
    image = frames()[-1]
    ours, (_, theirs) = encode_png(image), cv2.imencode(".png", image)
    assert len(ours) < 1.2 * len(theirs)


@pytest.mark.parametrize("image", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.uint16)])
def test_other_images_are_refused(image):
    with pytest.raises(ValueError, match="HxWx3 uint8 BGR"):
        encode_png(image)
