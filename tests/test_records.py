"""Records written without TensorFlow parse with TensorFlow's own parser."""

import io

import numpy as np
import pytest
import tensorflow as tf

from synthwave import records


def test_example_round_trips_through_tensorflow(tmp_path):
    features = {
        records.IMAGE: b"\x89PNG\x00\xff" * 50,
        records.FORMAT: "png",
        records.HEIGHT: 180,
        records.WIDTH: 320,
        records.CHANNELS: 3,
        records.VIDEO_KEY: "yt-dQw4w9WgXcQ",
        records.FRAME_INDEX: 2**40 + 7,
        records.TIMESTAMP_S: 12.5,
    }
    path = tmp_path / "x.tfrecord"
    with open(path, "wb") as handle:
        for _ in range(3):
            records.write_record(handle, records.encode_example(features))

    parsed = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    assert len(parsed) == 3
    feat = parsed[0].features.feature
    assert feat[records.IMAGE].bytes_list.value == [features[records.IMAGE]]
    assert feat[records.FORMAT].bytes_list.value == [b"png"]
    assert feat[records.FRAME_INDEX].int64_list.value == [2**40 + 7]
    assert feat[records.WIDTH].int64_list.value == [320]
    assert feat[records.TIMESTAMP_S].float_list.value == [12.5]
    # Byte-identical to TensorFlow's own serialisation (map entries sorted by key).
    ours = records.encode_example(features)
    theirs = tf.train.Example.FromString(ours).SerializeToString(deterministic=True)
    assert ours == theirs


def test_negative_int64_encodes_like_protobuf():
    ours = records.encode_example({"n": -3})
    assert tf.train.Example.FromString(ours).features.feature["n"].int64_list.value == [-3]


def test_reader_detects_corruption():
    buf = io.BytesIO()
    records.write_record(buf, records.encode_example({"a": 1}))
    good = buf.getvalue()
    assert records.read_records(io.BytesIO(good)) == [records.encode_example({"a": 1})]
    bad = bytearray(good)
    bad[14] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt"):
        records.read_records(io.BytesIO(bytes(bad)))
    with pytest.raises(ValueError, match="truncated"):
        records.read_records(io.BytesIO(good[:-3]))


def test_unsupported_value_is_refused():
    with pytest.raises(TypeError):
        records.encode_example({"a": np.zeros(3)})
