"""Where a download may go, how big and how long it may be, and what it may be.

Real HTTP on 127.0.0.1 (tests/loopback.py); name resolution is faked for the names a test
invents, so nothing ever leaves loopback (the `loopback_only` guard fails anything that would).
"""

from __future__ import annotations

import ast
import socket
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yt_dlp.extractor.youtube
from pytubefix.innertube import InnerTube

import tasks.download
from synthwave.settings import DownloadSettings
from tasks.download import check_destination, download, is_complete
from tasks.download_errors import PermanentDownloadError, TransientDownloadError
from tasks.sources import parse_source
from tests.loopback import loopback_only, sample_videos, video_server  # noqa: F401  (fixtures)
from tests.test_download import FakePytubeYouTube, FakeYtDlpYouTube

pytestmark = pytest.mark.usefixtures("loopback_only")

REPO = Path(__file__).resolve().parents[2]
OPEN = DownloadSettings(timeout_s=2.0, retries=0, retry_delay_s=0)  # the default: no list
LISTED = OPEN.model_copy(update={"allowed_hosts": ("127.0.0.1",)})
VID = "dQw4w9WgXcQ"


@pytest.fixture
def clip(sample_videos) -> Path:
    return sample_videos / "bottle-detection.mp4"


@pytest.fixture
def names(monkeypatch) -> dict[str, str]:
    """Invented host names -> the address the fake DNS gives them; anything else as before."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # noqa: ANN001, ANN202
        if host in table:
            family = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.mp4", "http://127.8.9.10:8080/a.mp4", "http://[::1]/a.mp4",
        "http://[::ffff:127.0.0.1]/a.mp4", "http://0.0.0.0/a.mp4", "http://10.1.2.3/a.mp4",
        "http://172.16.0.1/a.mp4", "http://192.168.1.1/a.mp4", "http://100.64.0.1/a.mp4",
        "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/a.mp4", "http://[fd00::1]/a.mp4",
        "http://224.0.0.1/a.mp4", "http://localhost/a.mp4",
    ],
)  # fmt: skip
def test_private_loopback_and_link_local_addresses_are_refused_by_default(url):
    with pytest.raises(PermanentDownloadError, match="private, loopback, link-local or reserved") as caught:
        check_destination(url, OPEN, url)
    assert url in str(caught.value) and "allowed_hosts" in str(caught.value) and "\n" not in str(caught.value)


def test_a_name_that_resolves_to_the_metadata_address_is_refused(names):
    names["metadata.test"] = "169.254.169.254"
    names["cdn.test"] = "93.184.216.34"
    with pytest.raises(PermanentDownloadError, match="169.254.169.254"):
        check_destination("http://metadata.test/latest/meta-data/", OPEN, "src")
    check_destination("https://cdn.test/a.mp4", OPEN, "src")  # public: allowed by default


def test_youtube_hosts_are_always_allowed():
    strict = OPEN.model_copy(update={"allowed_hosts": ()})
    for url in ("https://www.youtube.com/watch?v=x", "https://rr3---sn-abc.googlevideo.com/videoplayback"):
        check_destination(url, strict, url)  # no DNS needed either: the guard would refuse it


def test_a_list_allows_only_youtube_and_the_listed_hosts(names):
    settings = OPEN.model_copy(update={"allowed_hosts": ("media.example.org", ".cdn.test", "10.0.0.0/8")})
    for url in ("https://media.example.org/a.mp4", "https://eu.cdn.test/a.mp4", "http://10.9.8.7/a.mp4"):
        check_destination(url, settings, url)
    names["inside.test"] = "10.0.0.5"  # a name is not looked up to match a network: no rebinding
    for url in ("https://example.org/a.mp4", "http://inside.test/a.mp4", "http://192.168.0.1/a.mp4"):
        with pytest.raises(PermanentDownloadError, match="not in download.allowed_hosts"):
            check_destination(url, settings, url)


def test_a_refused_host_gets_no_request(video_server, clip, tmp_path):
    url = video_server.serve("/a.mp4", clip)
    with pytest.raises(PermanentDownloadError, match="127.0.0.1"):
        download(parse_source(url), OPEN, tmp_path)
    assert video_server.count("/a.mp4") == 0
    assert listing(tmp_path) == []


def test_every_redirect_hop_is_checked(video_server, clip, tmp_path, monkeypatch, names):
    """A public first hop that redirects to the metadata address: refused before the second request."""
    real = tasks.download._resolve
    monkeypatch.setattr(tasks.download, "_resolve", lambda host, port: (
        real("93.184.216.34", port) if host == "127.0.0.1" else real(host, port)))  # pretend the server is public
    names["metadata.test"] = "169.254.169.254"
    url = video_server.redirect("/go", "http://metadata.test/latest/meta-data/")
    with pytest.raises(PermanentDownloadError, match="metadata.test.*169.254.169.254"):
        download(parse_source(url), OPEN, tmp_path)
    assert video_server.count("/go") == 1
    assert listing(tmp_path) == []

    # With a list, a redirect off the list is refused the same way.
    url = video_server.redirect("/away", "http://elsewhere.test/a.mp4")
    with pytest.raises(PermanentDownloadError, match="elsewhere.test.*not in download.allowed_hosts"):
        download(parse_source(url), LISTED, tmp_path)


def test_a_redirect_to_another_scheme_is_refused(video_server, tmp_path):
    url = video_server.redirect("/ftp", "ftp://127.0.0.1/a.mp4")
    with pytest.raises(PermanentDownloadError, match="ftp"):
        download(parse_source(url), LISTED, tmp_path)


# -- what and how long -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (None, "PNG image"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>" * 50, "HTML page"),
        (np.random.default_rng(2).bytes(30_000), "cannot decode"),
    ],
)
def test_a_body_that_is_not_a_video_is_refused_whatever_its_type(video_server, tmp_path, body, says):
    if body is None:
        body = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    url = video_server.serve("/clip.mp4", body, "application/octet-stream")  # the type lies
    source = parse_source(url)
    with pytest.raises(PermanentDownloadError, match=f"not a video.*{says}") as caught:
        download(source, LISTED, tmp_path)
    assert url in str(caught.value)
    assert listing(tmp_path) == []  # nothing published: a rerun asks again
    assert not is_complete(source, tmp_path)


def test_a_direct_video_longer_than_max_duration_is_refused_and_deleted(video_server, clip, tmp_path):
    url = video_server.serve("/long.mp4", clip)  # about 40 s
    with pytest.raises(PermanentDownloadError, match=r"too long \(40 s; max_duration_s is 10\)"):
        download(parse_source(url), LISTED.model_copy(update={"max_duration_s": 10}), tmp_path)
    assert listing(tmp_path) == []
    assert download(parse_source(url), LISTED.model_copy(update={"max_duration_s": 60}), tmp_path).path.is_file()


def test_ytdlp_refuses_a_long_video_from_its_metadata_before_any_media_request(
    monkeypatch, video_server, clip, tmp_path
):
    fake = FakeYtDlpYouTube(video_server, clip)

    def real_extract(ie: Any, url: str) -> dict[str, Any]:
        return {**fake.real_extract(ie, url), "duration": 7200}

    monkeypatch.setattr(yt_dlp.extractor.youtube.YoutubeIE, "_real_extract", real_extract)
    with pytest.raises(PermanentDownloadError, match=r"too long \(7200 s; max_duration_s is 3600\)"):
        download(parse_source(f"https://youtu.be/{VID}"), OPEN.model_copy(update={"max_duration_s": 3600}), tmp_path)
    assert video_server.requests == []
    assert [p for p in listing(tmp_path) if not p.startswith(".")] == []


def test_pytube_refuses_a_long_video_before_any_media_request(monkeypatch, video_server, clip, tmp_path):
    fake = FakePytubeYouTube(video_server, clip)  # lengthSeconds 40
    monkeypatch.setattr(InnerTube, "player", lambda innertube, video_id: fake.player(video_id))
    settings = OPEN.model_copy(update={"downloader": "pytube", "max_duration_s": 10})
    with pytest.raises(PermanentDownloadError, match="too long"):
        download(parse_source(f"https://youtu.be/{VID}"), settings, tmp_path)
    assert video_server.requests == []


def _download_in_a_thread(url: str, settings: DownloadSettings, downloads: Path) -> BaseException | None:
    """The error `download` ended with, or None; fails if it is still running after 30 s."""
    ended: list[BaseException | None] = []

    def run() -> None:
        try:
            download(parse_source(url), settings, downloads)
            ended.append(None)
        except BaseException as error:  # noqa: BLE001  (handed to the test)
            ended.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    assert ended, "the download was still running after 30 s"
    return ended[0]


def test_a_server_dripping_bytes_cannot_hold_a_worker(video_server, clip, tmp_path):
    """1 byte every 0.2 s never trips the per-read timeout; the minimum rate ends it."""
    url = video_server.drip("/drip.mp4", clip.read_bytes(), size=1, every_s=0.2)
    slow = LISTED.model_copy(update={"timeout_s": 1.0, "min_bytes_per_s": 1000})

    error = _download_in_a_thread(url, slow, tmp_path / "downloads")

    assert isinstance(error, TransientDownloadError) and "too slow" in str(error) and url in str(error), error
    assert [p for p in listing(tmp_path / "downloads") if not p.startswith(".")] == []


def test_a_whole_download_has_a_deadline(video_server, clip, tmp_path):
    """Fast enough for the minimum rate, but over deadline_s in all."""
    url = video_server.drip("/steady.mp4", clip.read_bytes(), size=2000, every_s=0.1)
    steady = LISTED.model_copy(update={"timeout_s": 1.0, "min_bytes_per_s": 1000, "deadline_s": 1.5})

    error = _download_in_a_thread(url, steady, tmp_path / "downloads")

    assert isinstance(error, TransientDownloadError) and "deadline_s is 1.5" in str(error), error
    assert DownloadSettings().download_deadline_s() == 30 + 2 * 1024**3 / 10_000  # from max_bytes at the floor


# -- no shell ----------------------------------------------------------------------------------


def test_no_shell_is_ever_invoked():
    """No os.system/os.popen, and no subprocess call with shell=True, in the shipped code."""
    offenders = []
    for folder in ("tasks", "flows", "gan", "synthwave"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    name = ast.unparse(node.func)
                    shell = any(k.arg == "shell" and ast.unparse(k.value) != "False" for k in node.keywords)
                    if name in ("os.system", "os.popen", "os.spawnl", "commands.getoutput") or shell:
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert offenders == []
