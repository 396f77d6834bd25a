"""download(): real HTTP against a loopback server, real files, real yt-dlp and pytubefix.

Only what would reach YouTube is faked: yt-dlp's YoutubeIE._real_extract and pytubefix's
InnerTube.player (the metadata calls). Their stream URLs point at the loopback server, so
format choice, the download itself and the rename are the libraries' own code. A guard
fails any connection that would leave 127.0.0.1.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import yt_dlp.extractor.youtube
from pytubefix.innertube import InnerTube
from yt_dlp.utils import ExtractorError

from synthwave.settings import DownloadSettings
from tasks.download import Video, download
from tasks.download_errors import DownloadError, PermanentDownloadError, TransientDownloadError
from tasks.sources import parse_source
from tests.loopback import VideoServer, loopback_only, sample_videos, video_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("loopback_only")

# The loopback server is a private address: listed, as a deployment would list its own hosts.
FAST = DownloadSettings(timeout_s=2.0, retries=0, retry_delay_s=0, allowed_hosts=("127.0.0.1",))
VID = "dQw4w9WgXcQ"
GONE = "unavailabl0"  # the fakes answer "Video unavailable" for this id


@pytest.fixture
def clip(sample_videos) -> Path:
    return sample_videos / "bottle-detection.mp4"


@pytest.fixture
def downloads(tmp_path) -> Path:
    return tmp_path / "downloads"


def files(folder: Path) -> list[str]:
    """Everything in the download folder, hidden staging folders included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def fetch(url: str, downloads: Path, settings: DownloadSettings = FAST) -> Video:
    return download(parse_source(url), settings, downloads)


# -- local files -----------------------------------------------------------------------------


def test_local_file_is_used_in_place(clip, downloads):
    source = parse_source(str(clip))
    video = download(source, FAST, downloads)
    assert video == Video(source.key, clip.resolve(), "bottle-detection", str(clip.resolve()))
    assert not downloads.exists()  # no copy


# -- http(s) ---------------------------------------------------------------------------------


def test_direct_url_download_is_byte_identical(video_server, clip, downloads):
    url = video_server.serve("/media/bottle-detection.mp4", clip)
    source = parse_source(url)

    video = download(source, FAST, downloads)

    assert video.path == downloads / f"{source.key}.mp4"
    assert video.path.read_bytes() == clip.read_bytes()
    assert (video.key, video.title, video.source) == (source.key, "bottle-detection", url)
    assert files(downloads) == [f".{source.key}.json", f"{source.key}.mp4"]  # no staging left


@pytest.mark.parametrize(
    ("path", "content_type", "suffix"),
    [
        ("/stream", "video/x-matroska", ".mkv"),
        ("/clip.webm", "application/octet-stream", ".webm"),
        ("/stream", "application/octet-stream", ".mp4"),
        ("/clip.php", "video/quicktime; charset=binary", ".mov"),
    ],
)
def test_extension_from_url_path_else_content_type_else_mp4(
    video_server, clip, downloads, path, content_type, suffix
):
    url = video_server.serve(path, clip, content_type)  # a real video: undecodable bodies are refused
    assert fetch(url, downloads).path.suffix == suffix


def test_redirects_are_followed_and_the_final_path_names_the_extension(video_server, clip, downloads):
    video_server.serve("/files/real.mkv", clip, "application/octet-stream")
    url = video_server.redirect("/watch/123", "/files/real.mkv")
    video = fetch(url, downloads)
    assert video.path.suffix == ".mkv" and video.path.read_bytes() == clip.read_bytes()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_error_is_transient_and_the_next_call_succeeds(video_server, clip, downloads, status):
    url = video_server.serve("/flaky.mp4", clip)
    video_server.fail("/flaky.mp4", status, times=1)
    source = parse_source(url)

    with pytest.raises(TransientDownloadError, match=str(status)) as caught:
        download(source, FAST, downloads)
    assert url in str(caught.value)
    assert files(downloads) == []

    assert download(source, FAST, downloads).path.read_bytes() == clip.read_bytes()
    assert video_server.count("/flaky.mp4") == 2


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_error_is_permanent_after_one_request(video_server, downloads, status):
    url = video_server.fail("/gone.mp4", status)
    with pytest.raises(PermanentDownloadError, match=str(status)):
        fetch(url, downloads)
    assert video_server.count("/gone.mp4") == 1  # no retries inside: Prefect owns them


def test_truncated_body_is_transient_and_leaves_no_file(video_server, clip, downloads):
    body = clip.read_bytes()
    url = video_server.truncate("/cut.mp4", body, send=len(body) // 3)
    with pytest.raises(TransientDownloadError, match="/cut.mp4"):
        fetch(url, downloads)
    assert files(downloads) == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/html", "image/jpeg", "application/json"]
)
def test_a_body_that_is_not_a_video_is_permanent(video_server, downloads, content_type):
    url = video_server.serve("/page", b"<html>sign in</html>", content_type)
    with pytest.raises(PermanentDownloadError, match="not a video"):
        fetch(url, downloads)
    assert files(downloads) == []


def test_an_html_page_is_permanent(video_server, downloads):
    with pytest.raises(PermanentDownloadError, match=r"not a video \(Content-Type text/html\)"):
        fetch(video_server.html("/watch.mp4"), downloads)


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "streamed"])
def test_too_large_is_refused(video_server, clip, downloads, length):
    url = video_server.serve("/big.mp4", clip, length=length)
    with pytest.raises(PermanentDownloadError, match="too large"):
        fetch(url, downloads, FAST.model_copy(update={"max_bytes": 100_000}))
    assert files(downloads) == []


def test_without_content_length_a_small_enough_body_downloads(video_server, clip, downloads):
    url = video_server.serve("/chunked.mp4", clip, length=False)
    assert fetch(url, downloads).path.read_bytes() == clip.read_bytes()


def test_redirect_loop_is_permanent(video_server, downloads):
    with pytest.raises(PermanentDownloadError, match="redirect loop"):
        fetch(video_server.redirect_loop("/loop"), downloads)


def test_stall_mid_body_times_out_as_transient(video_server, clip, downloads):
    body = clip.read_bytes()
    url = video_server.stall("/stall.mp4", body, after=len(body) // 2, seconds=60)
    with pytest.raises(TransientDownloadError, match="Timeout"):
        fetch(url, downloads, FAST.model_copy(update={"timeout_s": 0.3}))
    assert files(downloads) == []


def test_connection_refused_is_transient(downloads):
    with VideoServer() as gone:
        url = gone.url("/a.mp4")  # a port nobody listens on once stopped
    with pytest.raises(TransientDownloadError, match="ConnectError"):
        fetch(url, downloads)


def test_a_complete_download_is_reused_without_a_request(video_server, clip, downloads):
    # A final name exists only after a complete download, and a URL is taken to name fixed
    # content, so the second call is a no-op (delete the file to force a refetch).
    url = video_server.serve("/once.mp4", clip)
    first = fetch(url, downloads)
    second = fetch(url, downloads)
    assert second == first
    assert video_server.count("/once.mp4") == 1


def test_a_failed_download_is_not_taken_for_a_complete_one(video_server, clip, downloads):
    body = clip.read_bytes()
    url = video_server.truncate("/retry.mp4", body, send=1000)
    with pytest.raises(TransientDownloadError):
        fetch(url, downloads)
    video_server.serve("/retry.mp4", clip)
    assert fetch(url, downloads).path.read_bytes() == body
    assert video_server.count("/retry.mp4") == 2


def test_errors_are_one_line_and_survive_pickling():
    # Prefect persists a failed task's exception and tests it with isinstance to retry.
    error = TransientDownloadError("https://example.com/a.mp4: HTTP 503 Service Unavailable")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TransientDownloadError and str(copy) == str(error)
    assert issubclass(TransientDownloadError, DownloadError)
    assert issubclass(PermanentDownloadError, DownloadError)


# -- YouTube through yt-dlp ----------------------------------------------------------------


class FakeYtDlpYouTube:
    """YoutubeIE._real_extract: the info dict YouTube would give, with loopback formats."""

    def __init__(self, server: VideoServer, clip: Path) -> None:
        self.server = server
        server.serve("/v360.mp4", clip)
        for path in ("/v144.mp4", "/v360.webm", "/v720.mp4", "/p360.mp4", "/a.m4a"):
            server.serve(path, f"format {path}".encode())
        self.overrides: dict[str, str] = {}  # format_id -> path

    def _format(
        self, format_id: str, path: str, ext: str, height: int | None, vcodec: str, acodec: str = "none"
    ) -> dict[str, Any]:
        url = self.server.url(self.overrides.get(format_id, path))
        return dict(format_id=format_id, url=url, ext=ext, height=height, vcodec=vcodec, acodec=acodec)

    def real_extract(self, ie: Any, url: str) -> dict[str, Any]:
        video_id = ie._match_id(url)
        if video_id == GONE:
            raise ExtractorError("Video unavailable. This video is private", expected=True)
        return {
            "id": video_id,
            "title": "Loopback clip",
            "formats": [
                self._format("139", "/a.m4a", "m4a", None, "none", "mp4a.40.5"),
                self._format("160", "/v144.mp4", "mp4", 144, "avc1.4d400c"),
                self._format("18", "/p360.mp4", "mp4", 360, "avc1.42001E", "mp4a.40.2"),
                self._format("243", "/v360.webm", "webm", 360, "vp9"),
                self._format("134", "/v360.mp4", "mp4", 360, "avc1.4d401e"),
                self._format("136", "/v720.mp4", "mp4", 720, "avc1.4d401f"),
            ],
        }


@pytest.fixture
def fake_ytdlp(monkeypatch, video_server, clip) -> FakeYtDlpYouTube:
    fake = FakeYtDlpYouTube(video_server, clip)

    def real_extract(ie: Any, url: str) -> dict[str, Any]:  # a function: binds to the extractor
        return fake.real_extract(ie, url)

    monkeypatch.setattr(yt_dlp.extractor.youtube.YoutubeIE, "_real_extract", real_extract)
    return fake


def test_ytdlp_takes_the_360p_mp4_video_stream(fake_ytdlp, video_server, clip, downloads):
    video = fetch(f"https://youtu.be/{VID}?si=share", downloads)

    watch = f"https://www.youtube.com/watch?v={VID}"
    assert video == Video(f"yt-{VID}", downloads / f"yt-{VID}.mp4", "Loopback clip", watch)
    assert video.path.read_bytes() == clip.read_bytes()
    assert [path for _, path in video_server.requests] == ["/v360.mp4"]
    assert files(downloads) == [f".yt-{VID}.json", f"yt-{VID}.mp4"]


def test_ytdlp_reuses_a_download_only_for_the_same_max_height(fake_ytdlp, video_server, downloads):
    fetch(f"https://youtu.be/{VID}", downloads)
    fetch(f"https://youtu.be/{VID}", downloads)
    assert video_server.count("/v360.mp4") == 1  # second call: no request

    small = fetch(f"https://youtu.be/{VID}", downloads, FAST.model_copy(update={"max_height": 144}))
    assert video_server.count("/v144.mp4") == 1
    assert small.path.read_bytes() == b"format /v144.mp4"
    assert files(downloads) == [f".yt-{VID}.json", f"yt-{VID}.mp4"]


def test_ytdlp_unavailable_video_is_permanent(fake_ytdlp, video_server, downloads):
    with pytest.raises(PermanentDownloadError, match="Video unavailable") as caught:
        fetch(f"https://www.youtube.com/watch?v={GONE}", downloads)
    assert GONE in str(caught.value) and "\n" not in str(caught.value)
    assert video_server.requests == []
    assert files(downloads) == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransientDownloadError), (429, TransientDownloadError), (404, PermanentDownloadError),
     (403, PermanentDownloadError)],
)  # fmt: skip
def test_ytdlp_stream_http_errors_are_classified(fake_ytdlp, video_server, downloads, status, error):
    fake_ytdlp.overrides["134"] = "/broken.mp4"
    video_server.fail("/broken.mp4", status)
    with pytest.raises(error, match=f"HTTP Error {status}"):
        fetch(f"https://youtu.be/{VID}", downloads)
    assert files(downloads) == []


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "streamed"])
def test_ytdlp_too_large_is_permanent(fake_ytdlp, video_server, clip, downloads, length):
    video_server.serve("/v360.mp4", clip, length=length)
    with pytest.raises(PermanentDownloadError, match="max_bytes"):
        fetch(f"https://youtu.be/{VID}", downloads, FAST.model_copy(update={"max_bytes": 100_000}))
    assert files(downloads) == []


# -- YouTube through pytubefix ---------------------------------------------------------------

# (itag, path, mime type, height): progressive 360p, and adaptive video and audio streams.
PYTUBE_STREAMS = [
    (18, "/p360.mp4", 'video/mp4; codecs="avc1.42001E, mp4a.40.2"', 360),
    (160, "/a144.mp4", 'video/mp4; codecs="avc1.4d400c"', 144),
    (134, "/a360.mp4", 'video/mp4; codecs="avc1.4d401e"', 360),
    (243, "/a360.webm", 'video/webm; codecs="vp9"', 360),
    (136, "/a720.mp4", 'video/mp4; codecs="avc1.4d401f"', 720),
    (140, "/audio.m4a", 'audio/mp4; codecs="mp4a.40.2"', None),
]


class FakePytubeYouTube:
    """InnerTube.player: YouTube's player response (and visitorData), streams on loopback."""

    def __init__(self, server: VideoServer, clip: Path) -> None:
        self.server = server
        self.bodies = {path: f"stream {path}".encode() * 50 for _, path, _, _ in PYTUBE_STREAMS}
        self.bodies["/a360.mp4"] = clip.read_bytes()
        for path, body in self.bodies.items():
            server.serve(path, body)
        self.announced: dict[str, int] = {}  # path -> contentLength YouTube claims, if not the truth

    def _stream(self, itag: int, path: str, mime: str, height: int | None) -> dict[str, Any]:
        shape = {"width": height * 16 // 9, "height": height, "fps": 30} if height else {}
        return {
            "itag": itag,
            "url": self.server.url(path) + f"?itag={itag}&expire=0",  # pytubefix appends &range=
            "mimeType": mime,
            "bitrate": 1000 * (height or 128),
            "contentLength": str(self.announced.get(path, len(self.bodies[path]))),
            "approxDurationMs": "40000",
            "lastModified": "1700000000000000",
            **shape,
        }

    def player(self, video_id: str) -> dict[str, Any]:
        response: dict[str, Any] = {
            "responseContext": {"visitorData": "loopback"},
            "videoDetails": {"videoId": video_id, "title": "Loopback clip", "lengthSeconds": "40"},
        }
        if video_id == GONE:
            return response | {"playabilityStatus": {"status": "ERROR", "reason": "Video unavailable"}}
        return response | {
            "playabilityStatus": {"status": "OK"},
            "streamingData": {
                "formats": [self._stream(*s) for s in PYTUBE_STREAMS if s[0] == 18],
                "adaptiveFormats": [self._stream(*s) for s in PYTUBE_STREAMS if s[0] != 18],
            },
            "playerConfig": {
                "mediaCommonConfig": {"mediaUstreamerRequestConfig": {"videoPlaybackUstreamerConfig": ""}}
            },
        }


@pytest.fixture
def fake_pytube(monkeypatch, video_server, clip) -> FakePytubeYouTube:
    fake = FakePytubeYouTube(video_server, clip)
    monkeypatch.setattr(InnerTube, "player", lambda innertube, video_id: fake.player(video_id))
    return fake


PYTUBE = FAST.model_copy(update={"downloader": "pytube"})


@pytest.mark.parametrize(
    ("max_height", "expected"),
    [(360, "/a360.mp4"), (480, "/a360.mp4"), (100, "/a144.mp4"), (1080, "/a720.mp4")],
)
def test_pytube_takes_the_best_mp4_video_at_or_under_max_height(
    fake_pytube, video_server, downloads, max_height, expected
):
    video = fetch(f"https://youtu.be/{VID}", downloads, PYTUBE.model_copy(update={"max_height": max_height}))

    assert video.path == downloads / f"yt-{VID}.mp4"
    assert video.path.read_bytes() == fake_pytube.bodies[expected]
    assert video.title == "Loopback clip"
    assert {path for _, path, _, _ in PYTUBE_STREAMS if video_server.count(path)} == {expected}
    assert files(downloads) == [f".yt-{VID}.json", f"yt-{VID}.mp4"]


def test_pytube_unavailable_video_is_permanent(fake_pytube, video_server, downloads):
    with pytest.raises(PermanentDownloadError, match="VideoUnavailable") as caught:
        fetch(f"https://youtu.be/{GONE}", downloads, PYTUBE)
    assert GONE in str(caught.value)
    assert video_server.requests == []


def test_pytube_server_error_on_the_stream_is_transient(fake_pytube, video_server, downloads):
    video_server.fail("/a360.mp4", 503)
    with pytest.raises(TransientDownloadError, match="503"):
        fetch(f"https://youtu.be/{VID}", downloads, PYTUBE)
    assert files(downloads) == []


def test_pytube_too_large_is_permanent(fake_pytube, video_server, downloads):
    with pytest.raises(PermanentDownloadError, match="too large"):
        fetch(f"https://youtu.be/{VID}", downloads, PYTUBE.model_copy(update={"max_bytes": 100_000}))
    assert video_server.requests == []  # refused on the announced size


def test_pytube_stream_larger_than_announced_is_cut_off(fake_pytube, video_server, downloads):
    fake_pytube.announced["/a360.mp4"] = 50_000
    with pytest.raises(PermanentDownloadError, match="over max_bytes"):
        fetch(f"https://youtu.be/{VID}", downloads, PYTUBE.model_copy(update={"max_bytes": 100_000}))
    assert files(downloads) == []

