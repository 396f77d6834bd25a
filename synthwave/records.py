"""The frame record: a `tf.train.Example` in TFRecord files, written without TensorFlow.

Ingest workers only write records, and importing TensorFlow costs ~800 MB of memory and
seconds of start-up per process. The two formats are small and stable, so they are
encoded here directly: the TFRecord framing (length, masked CRC32C, data, masked CRC32C)
and the protobuf wire format of Example/Features/Feature. `tests/test_records.py` parses
the output with TensorFlow's own parser.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import google_crc32c

# Feature names of one frame record. The reader in gan/data.py parses exactly these.
IMAGE = "image"  # encoded PNG or JPEG bytes
FORMAT = "format"  # b"png" | b"jpeg"
HEIGHT = "height"
WIDTH = "width"
CHANNELS = "channels"
VIDEO_KEY = "video_key"
FRAME_INDEX = "frame_index"
TIMESTAMP_S = "timestamp_s"

Value = bytes | str | int | float


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> two's complement, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(value: Value) -> bytes:
    # Feature { oneof: bytes_list = 1; float_list = 2; int64_list = 3 }; lists are packed.
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return _field(1, _field(1, value))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"unsupported feature value {value!r}")
    if isinstance(value, int):
        return _field(3, _field(1, _varint(value)))
    return _field(2, _field(1, struct.pack("<f", value)))


def encode_example(features: dict[str, Value]) -> bytes:
    """Serialise {name: scalar} as a tf.train.Example (one value per feature)."""
    entries = b"".join(
        _field(1, _field(1, name.encode()) + _field(2, _feature(value)))
        for name, value in sorted(features.items())
    )
    return _field(1, entries)


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One TFRecord: the framing TensorFlow's TFRecordDataset reads and checks."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def write_record(handle: BinaryIO, example: bytes) -> int:
    """Append one framed record to an open binary file; returns the bytes written."""
    framed = frame_record(example)
    handle.write(framed)
    return len(framed)


def read_records(handle: BinaryIO) -> list[bytes]:
    """Read and verify every record of a TFRecord file (used to check shards without TF)."""
    records = []
    while header := handle.read(12):
        if len(header) < 12:
            raise ValueError("truncated TFRecord header")
        (length,) = struct.unpack("<Q", header[:8])
        if struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
            raise ValueError("corrupt TFRecord length")
        data = handle.read(length)
        footer = handle.read(4)
        if len(data) < length or len(footer) < 4 or struct.unpack("<I", footer)[0] != _masked_crc(data):
            raise ValueError("truncated or corrupt TFRecord data")
        records.append(data)
    return records
