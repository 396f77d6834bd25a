"""A real S3-compatible server on 127.0.0.1: moto's server mode, in a thread of the test process.

    with S3Server() as s3:                  # or the `s3` fixture (a fresh bucket per test)
        s3.create_bucket("data")
        StorageSettings(url="s3://data/prefix", endpoint_url=s3.endpoint_url)

moto keeps objects in memory and speaks the S3 REST API over HTTP, so s3fs and botocore
talk to it exactly as to AWS or MinIO. `credentials()` sets dummy keys and switches off
botocore's instance-metadata probe (169.254.169.254): no request ever leaves 127.0.0.1.
Import the fixtures into a test module: `from tests.s3_fixture import s3, s3_server  # noqa: F401`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# The environment botocore reads. Region: signing needs one; keys: moto accepts any.
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials in the environment; no AWS profile or config file is read."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


class S3Server:
    """moto's ThreadedMotoServer on 127.0.0.1, on a port the OS chooses."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def __enter__(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def client(self):  # noqa: ANN201 (a boto3 S3 client)
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"], region_name=ENV["AWS_DEFAULT_REGION"],
        )  # fmt: skip

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Object key -> size, every object under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


@dataclass(frozen=True)
class Bucket:
    """A fresh, empty bucket on the session's server."""

    server: S3Server
    name: str

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.name}/{prefix}".rstrip("/")

    def keys(self, prefix: str = "") -> dict[str, int]:
        return self.server.keys(self.name, prefix)

    def read(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def write(self, key: str, body: bytes) -> None:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=body)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A new bucket on the shared server, with dummy credentials in the environment."""
    credentials(monkeypatch)
    return Bucket(s3_server, s3_server.create_bucket(f"test-{uuid.uuid4().hex[:12]}"))
