"""Expand a YouTube playlist URL into its videos' watch URLs, so one source can name many.

The listing is flat, one request per page of the playlist and none per video: each video
is then fetched by tasks.download like any other source. Errors are classified as there
(tasks/download_errors.py: TransientDownloadError is worth a retry).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yt_dlp
import yt_dlp.utils
from pytubefix import Playlist

from synthwave.settings import DownloadSettings
from tasks.download import js_runtimes
from tasks.download_errors import PermanentDownloadError, pytube_error, ytdlp_error
from tasks.sources import InvalidSourceError, youtube_id

logger = logging.getLogger(__name__)

# PL..., UU..., OLAK5uy_..., WL, LL, ...; the longest known (RDCLAK5uy_...) are 43 characters.
_LIST_ID = re.compile(r"[A-Za-z0-9_-]{2,64}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_FIX = "check the URL, and that the playlist is public or unlisted and has videos"


def playlist_id(text: str) -> str | None:
    """The list id of a YouTube URL that names a playlist and no video; None otherwise.

    youtube.com/playlist?list=<id> and watch?list=<id> on any youtube.com host (www., m.,
    music.), with or without the scheme. A watch?v=<video>&list=<id> URL names one video
    (tasks.sources reads it so), and is not a playlist here.
    """
    raw = text.strip()
    try:
        parts = urlsplit(raw if _SCHEME.match(raw) else f"https://{raw}")
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not (
        host == "youtube.com" or host.endswith(".youtube.com")
    ):
        return None
    query = parse_qs(parts.query)
    if parts.path.rstrip("/") not in ("/playlist", "/watch") or "v" in query:
        return None
    candidate = query.get("list", [""])[0]
    return candidate if _LIST_ID.fullmatch(candidate) else None


def expand_playlist(text: str, settings: DownloadSettings) -> list[str]:
    """The canonical watch URLs of the playlist's videos, in playlist order, without repeats.

    Raises InvalidSourceError if `text` is not a playlist URL (see playlist_id),
    PermanentDownloadError for a playlist that is private, missing or empty, and
    TransientDownloadError for network errors and 5xx; each message names the playlist.
    """
    list_id = playlist_id(text)
    if list_id is None:
        raise InvalidSourceError(
            f"{text.strip()!r} is not a YouTube playlist URL: "
            "give https://www.youtube.com/playlist?list=<id>"
        )
    # One form for every host and path: music./m./watch?list= all list the same videos.
    url = f"https://www.youtube.com/playlist?list={list_id}"
    try:
        found = _BACKENDS[settings.downloader](url, settings)
    except PermanentDownloadError as exc:
        raise PermanentDownloadError(f"{str(exc).rstrip('.')}: {_FIX}") from exc
    ids = [youtube_id(candidate) for candidate in found]
    if None in ids:
        logger.warning("%s: skipped %d entries that are not videos", url, ids.count(None))
    urls = [f"https://www.youtube.com/watch?v={video_id}" for video_id in dict.fromkeys(ids) if video_id]
    if not urls:
        raise PermanentDownloadError(f"{url}: no videos (empty, private or missing playlist?): {_FIX}")
    return urls


def _ytdlp_urls(url: str, settings: DownloadSettings) -> list[str]:
    options: dict[str, Any] = {
        "extract_flat": "in_playlist",  # the playlist's pages only, no request per video
        "quiet": True,
        "color": "no_color",  # error messages end up in Prefect logs and the UI
        "logger": logging.getLogger("tasks.playlists.yt_dlp"),
        "socket_timeout": settings.timeout_s,
        # Page fetches retry under extractor_retries; `retries` is the media downloader's.
        "extractor_retries": settings.retries,
        "retry_sleep_functions": {"extractor": lambda n: settings.retry_delay_s * 2**n},
        # YouTube's playlist page leaves out private and deleted videos; by default yt-dlp
        # asks again to list them too, and each would then fail its download on every run.
        "compat_opts": ["no-youtube-unavailable-videos"],
        "js_runtimes": js_runtimes(),
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise ytdlp_error(url, exc) from exc
    # Flat entries carry the video id (their url may be a /shorts/ one); one without an id
    # is no video, and youtube_id turns it away.
    return [f"https://www.youtube.com/watch?v={entry.get('id')}" for entry in info.get("entries") or []]


def _pytube_urls(url: str, settings: DownloadSettings) -> list[str]:
    # pytubefix takes no timeout for playlist pages: settings apply to the video downloads only.
    try:
        return list(Playlist(url).video_urls)
    except Exception as exc:  # pytubefix raises anything from KeyError up when YouTube changes
        raise pytube_error(url, exc) from exc


_BACKENDS: dict[str, Callable[[str, DownloadSettings], list[str]]] = {
    "yt-dlp": _ytdlp_urls,
    "pytube": _pytube_urls,
}
