"""Playlist URLs and their expansion, with real yt-dlp and pytubefix code.

Only YouTube is faked. yt-dlp: YoutubeTabIE._real_extract, whose listing it reads from the
loopback server through yt-dlp's own network code (so HTTP failures are real), returning
entries shaped as the real extractor's flat ones. pytubefix: its urlopen is pointed at the
loopback server, which serves a playlist page as YouTube does (ytInitialData in the HTML).
A guard fails any connection that would leave 127.0.0.1.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytubefix.request
import yt_dlp.extractor.youtube
from yt_dlp.utils import ExtractorError

from synthwave.settings import DownloadSettings
from tasks.download_errors import PermanentDownloadError, TransientDownloadError
from tasks.playlists import expand_playlist, playlist_id
from tasks.sources import InvalidSourceError, youtube_id
from tests.loopback import VideoServer

pytestmark = pytest.mark.usefixtures("loopback_only")

FAST = DownloadSettings(timeout_s=2.0, retries=0, retry_delay_s=0)
PYTUBE = FAST.model_copy(update={"downloader": "pytube"})
LIST = "PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG"
PLAYLIST = f"https://www.youtube.com/playlist?list={LIST}"
A, B, C, D = "dQw4w9WgXcQ", "9bZkp7q19f0", "kJQP7kiw5Fk", "OPf0YbXqDm0"


def watch(*ids: str) -> list[str]:
    return [f"https://www.youtube.com/watch?v={video_id}" for video_id in ids]


# -- playlist_id -----------------------------------------------------------------------------

PLAYLIST_URLS = [
    (PLAYLIST, LIST),
    (f"https://youtube.com/playlist?list={LIST}", LIST),
    (f"https://m.youtube.com/playlist?list={LIST}&si=share", LIST),
    ("https://music.youtube.com/playlist?list=OLAK5uy_m4xAFdmMC5rX3Ji3g93pQe3hqLZw_9LhM",
     "OLAK5uy_m4xAFdmMC5rX3Ji3g93pQe3hqLZw_9LhM"),
    (f"http://WWW.YouTube.com/playlist/?list={LIST}", LIST),
    (f"https://www.youtube.com/watch?list={LIST}", LIST),  # watch page without a video
    (f"https://www.youtube.com/watch?list={LIST}&index=3", LIST),
    (f"https://www.youtube.com/watch?v=&list={LIST}", LIST),  # an empty v names no video
    (f"  www.youtube.com/playlist?list={LIST}\n", LIST),  # typed without the scheme
    ("https://www.youtube.com/playlist?list=WL", "WL"),
]  # fmt: skip

NOT_PLAYLISTS = [
    f"https://www.youtube.com/watch?v={A}&list={LIST}",  # one video; the list is context
    f"https://www.youtube.com/watch?list={LIST}&v={A}",
    f"https://youtu.be/{A}?list={LIST}",
    f"https://www.youtube.com/shorts/{A}?list={LIST}",
    f"https://www.youtube.com/watch?v={A}",
    "https://www.youtube.com/playlist",
    "https://www.youtube.com/playlist?list=",
    "https://www.youtube.com/playlist?list=PL%2F..%2Fetc",  # not an id
    "https://www.youtube.com/@SomeChannel/videos",
    f"https://www.youtube.com/@SomeChannel/playlist?list={LIST}",
    f"https://example.com/playlist?list={LIST}",
    f"https://notyoutube.com/playlist?list={LIST}",
    f"https://youtube.com.evil.example/playlist?list={LIST}",
    f"ftp://www.youtube.com/playlist?list={LIST}",
    f"/videos/playlist?list={LIST}",
    "https://[::1/playlist?list=PLx",  # malformed
    "",
]


@pytest.mark.parametrize(("url", "expected"), PLAYLIST_URLS)
def test_playlist_id_of_every_playlist_url_form(url, expected):
    assert playlist_id(url) == expected
    assert youtube_id(url.strip()) is None  # never also read as one video


@pytest.mark.parametrize("url", NOT_PLAYLISTS)
def test_single_videos_and_other_urls_are_not_playlists(url):
    assert playlist_id(url) is None


def test_a_url_that_is_not_a_playlist_is_refused_before_any_request():
    with pytest.raises(InvalidSourceError, match="not a YouTube playlist URL"):
        expand_playlist(f"https://youtu.be/{A}", FAST)


# -- through yt-dlp --------------------------------------------------------------------------


class FakeYouTubeTab:
    """YoutubeTabIE._real_extract: a playlist's listing from the loopback server, flat.

    /playlist/<id> holds {"videos": [...], "hidden": [...]}; hidden ones (private, deleted)
    are listed only when yt-dlp asks again for unavailable videos, as the real one does.
    """

    def __init__(self, server: VideoServer) -> None:
        self.server = server
        self.given: list[str] = []  # URLs the extractor was asked for
        self.alerts: dict[str, str] = {}  # list id -> what YouTube says instead of a listing
        self.shorts: set[str] = set()  # listed with a /shorts/ URL

    def add(self, list_id: str, videos: list[str], hidden: list[str] | None = None) -> None:
        body = json.dumps({"videos": videos, "hidden": hidden or []}).encode()
        self.server.serve(f"/playlist/{list_id}", body, "application/json")

    def real_extract(self, ie: Any, url: str) -> dict[str, Any]:
        self.given.append(url)
        list_id = parse_qs(urlsplit(url).query)["list"][0]
        if list_id in self.alerts:
            raise ExtractorError(f"YouTube said: {self.alerts[list_id]}", expected=True)
        page = ie._download_json(self.server.url(f"/playlist/{list_id}"), list_id)
        videos = page["videos"]
        if "no-youtube-unavailable-videos" not in ie.get_param("compat_opts"):
            videos += page["hidden"]
        return ie.playlist_result(map(self._entry, videos), list_id, "Loopback playlist")

    def _entry(self, video_id: str) -> dict[str, Any]:
        """The fields of YoutubeTabBaseInfoExtractor._extract_video that matter here."""
        path = f"shorts/{video_id}" if video_id in self.shorts else f"watch?v={video_id}"
        url = f"https://www.youtube.com/{path}"
        return {"_type": "url", "ie_key": "Youtube", "id": video_id, "url": url, "title": f"Video {video_id}"}


@pytest.fixture
def fake_tab(monkeypatch, video_server) -> FakeYouTubeTab:
    fake = FakeYouTubeTab(video_server)

    def real_extract(ie: Any, url: str) -> dict[str, Any]:  # a function: binds to the extractor
        return fake.real_extract(ie, url)

    def video_page(ie: Any, url: str) -> None:
        pytest.fail(f"a flat listing fetched a video page: {url}")

    monkeypatch.setattr(yt_dlp.extractor.youtube.YoutubeTabIE, "_real_extract", real_extract)
    monkeypatch.setattr(yt_dlp.extractor.youtube.YoutubeIE, "_real_extract", video_page)
    return fake


@pytest.mark.parametrize("url", [url for url, expected in PLAYLIST_URLS if expected == LIST])
def test_ytdlp_lists_the_videos_in_order_once_each(fake_tab, video_server, url):
    fake_tab.shorts.add(C)
    fake_tab.add(LIST, [A, B, A, C, D, B])

    assert expand_playlist(url, FAST) == watch(A, B, C, D)
    assert fake_tab.given == [PLAYLIST]  # one canonical form, whatever was typed
    assert video_server.requests == [("GET", f"/playlist/{LIST}")]


def test_ytdlp_leaves_out_unavailable_videos(fake_tab):
    fake_tab.add(LIST, [A, B], hidden=[C])
    assert expand_playlist(PLAYLIST, FAST) == watch(A, B)


def test_ytdlp_skips_entries_that_are_not_videos(fake_tab, caplog):
    fake_tab.add(LIST, [A, "PLnestedPlaylist1234"])
    assert expand_playlist(PLAYLIST, FAST) == watch(A)
    assert "skipped 1 entries that are not videos" in caplog.text


def test_ytdlp_empty_playlist_is_permanent(fake_tab):
    fake_tab.add(LIST, [])
    with pytest.raises(PermanentDownloadError, match="no videos") as caught:
        expand_playlist(PLAYLIST, FAST)
    assert PLAYLIST in str(caught.value) and "public or unlisted" in str(caught.value)


@pytest.mark.parametrize("alert", ["This playlist is private.", "The playlist does not exist."])
def test_ytdlp_private_or_missing_playlist_is_permanent(fake_tab, video_server, alert):
    fake_tab.alerts[LIST] = alert
    with pytest.raises(PermanentDownloadError) as caught:
        expand_playlist(f"https://music.youtube.com/playlist?list={LIST}", FAST)
    message = str(caught.value)
    assert PLAYLIST in message and alert.rstrip(".") in message and "check the URL" in message
    assert "\n" not in message
    assert video_server.requests == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, TransientDownloadError), (429, TransientDownloadError), (404, PermanentDownloadError)],
)
def test_ytdlp_http_errors_are_classified(fake_tab, video_server, status, error):
    fake_tab.add(LIST, [A])
    video_server.fail(f"/playlist/{LIST}", status)
    with pytest.raises(error, match=f"HTTP Error {status}") as caught:
        expand_playlist(PLAYLIST, FAST)
    assert type(caught.value) is error and PLAYLIST in str(caught.value)


# -- through pytubefix -----------------------------------------------------------------------


def playlist_page(videos: list[str]) -> bytes:
    """A playlist page as pytubefix reads it: ytInitialData, one playlistVideoListRenderer."""
    listing = {"playlistVideoListRenderer": {"contents": [
        {"playlistVideoRenderer": {"videoId": video_id}} for video_id in videos
    ]}}  # fmt: skip
    section = {"sectionListRenderer": {"contents": [{"itemSectionRenderer": {"contents": [listing]}}]}}
    data = {"contents": {"twoColumnBrowseResultsRenderer": {"tabs": [{"tabRenderer": {"content": section}}]}}}
    return f"<html><script>var ytInitialData = {json.dumps(data)};</script></html>".encode()


# What YouTube serves for a private or missing playlist: an alert, no listing.
ALERT_PAGE = (
    b'<script>var ytInitialData = {"alerts": [{"alertRenderer": {"type": "ERROR", '
    b'"text": {"simpleText": "The playlist does not exist."}}}]};</script>'
)


@pytest.fixture
def youtube_on_loopback(monkeypatch, video_server) -> VideoServer:
    """pytubefix's requests to www.youtube.com go to the loopback server instead."""
    real_urlopen = pytubefix.request.urlopen

    def urlopen(request: urllib.request.Request, timeout: object = None) -> object:
        parts = urlsplit(request.full_url)
        assert parts.hostname == "www.youtube.com", request.full_url
        request.full_url = video_server.url(f"{parts.path}?{parts.query}")
        return real_urlopen(request, timeout=timeout)

    monkeypatch.setattr(pytubefix.request, "urlopen", urlopen)
    return video_server


def test_pytube_lists_the_videos_in_order_once_each(youtube_on_loopback):
    youtube_on_loopback.serve("/playlist", playlist_page([A, B, A, C]), "text/html")

    assert expand_playlist(f"https://m.youtube.com/watch?list={LIST}", PYTUBE) == watch(A, B, C)
    assert youtube_on_loopback.requests == [("GET", f"/playlist?list={LIST}")]


@pytest.mark.parametrize("page", [playlist_page([]), ALERT_PAGE], ids=["empty", "missing"])
def test_pytube_empty_or_missing_playlist_is_permanent(youtube_on_loopback, page):
    youtube_on_loopback.serve("/playlist", page, "text/html")
    with pytest.raises(PermanentDownloadError, match="no videos") as caught:
        expand_playlist(PLAYLIST, PYTUBE)
    assert PLAYLIST in str(caught.value)


@pytest.mark.parametrize(
    ("status", "error"), [(503, TransientDownloadError), (404, PermanentDownloadError)]
)
def test_pytube_http_errors_are_classified(youtube_on_loopback, status, error):
    youtube_on_loopback.fail("/playlist", status)
    with pytest.raises(error, match=str(status)) as caught:
        expand_playlist(PLAYLIST, PYTUBE)
    assert type(caught.value) is error and PLAYLIST in str(caught.value)
