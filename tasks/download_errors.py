"""What went wrong fetching a video or a playlist, and whether a retry can help.

The Prefect task around a download retries TransientDownloadError only, so the
classification here decides what gets retried. Shared by tasks/download.py and
tasks/playlists.py; every message is one line that starts with the source's location.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
from collections.abc import Iterator

import pytubefix.exceptions
import yt_dlp.networking.exceptions
import yt_dlp.utils

from synthwave.errors import UserError

_RETRY_STATUS = {408, 425, 429}  # and every 5xx
# yt-dlp reports some failures only as text; these mean the network or the server hiccuped.
_TRANSIENT_TEXT = re.compile(
    r"HTTP Error (5\d\d|408|425|429)|timed? ?out|connection (reset|refused|aborted)|"
    r"temporar|try again later|remote end closed|incomplete ?read|did not get any data blocks",
    re.IGNORECASE,
)


class DownloadError(UserError):
    """A source could not be downloaded; the message is one line that names the source."""


class TransientDownloadError(DownloadError):
    """Worth retrying: connection errors, timeouts, truncated bodies, 5xx, 429."""


class PermanentDownloadError(DownloadError):
    """Retrying cannot help: 404/403/410, private or unavailable video, not a video, too large."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
    """"TypeName: message" on one line, for an error message."""
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def status_error(where: str, status: int, detail: str) -> DownloadError:
    """The error for an HTTP status: transient for 408, 425, 429 and 5xx."""
    retry = status in _RETRY_STATUS or 500 <= status <= 599
    return (TransientDownloadError if retry else PermanentDownloadError)(f"{where}: {detail}")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc and what it wraps: yt-dlp keeps the original in exc_info, ExtractorError in cause."""
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None) or (None, None)
        todo += [exc_info[1], getattr(current, "cause", None), current.__cause__, current.__context__]


def ytdlp_error(where: str, exc: yt_dlp.utils.YoutubeDLError) -> DownloadError:
    """Classify a yt-dlp failure fetching `where` (a video or a playlist URL)."""
    detail = one_line(str(exc)).removeprefix("ERROR: ")
    for cause in _causes(exc):
        if isinstance(cause, yt_dlp.networking.exceptions.HTTPError):
            return status_error(where, cause.status, detail)
    transient = (
        yt_dlp.networking.exceptions.TransportError,
        yt_dlp.utils.ContentTooShortError,
        TimeoutError,
        ConnectionError,
    )
    if any(isinstance(cause, transient) for cause in _causes(exc)) or _TRANSIENT_TEXT.search(detail):
        return TransientDownloadError(f"{where}: {detail}")
    # "Video unavailable", "Private video", "Unsupported URL", sign-in walls, ...
    return PermanentDownloadError(f"{where}: {detail}")


def pytube_error(where: str, exc: Exception) -> DownloadError:
    """Classify a pytubefix failure fetching `where` (a video or a playlist URL)."""
    if isinstance(exc, urllib.error.HTTPError):
        return status_error(where, exc.code, describe(exc))
    transient = (
        urllib.error.URLError,
        http.client.HTTPException,
        TimeoutError,
        ConnectionError,
        pytubefix.exceptions.MaxRetriesExceeded,
    )
    cls = TransientDownloadError if isinstance(exc, transient) else PermanentDownloadError
    # VideoUnavailable (private, age-restricted, members-only, ...), RegexMatchError, ...
    return cls(f"{where}: {describe(exc)}")
