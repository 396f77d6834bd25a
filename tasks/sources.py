"""Turn what the user typed into a Source: YouTube video, http(s) URL or local file.

Every Source carries a stable, filesystem-safe key that names its download, shards and
cache entries. Keys are built from a video id or a hash, never from raw URL text, so no
input can steer a path outside the data folder.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit, urlunsplit

from synthwave.digest import file_sha256
from synthwave.errors import UserError

_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_YOUTUBE_HOSTS = {
    "youtube.com", "youtu.be", "www.youtu.be", "youtube-nocookie.com", "www.youtube-nocookie.com",
}  # fmt: skip
# Path prefixes that put the id in the next segment: /shorts/<id>, /embed/<id>, ...
_ID_PATHS = {"shorts", "embed", "live", "v", "e"}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidSourceError(UserError, ValueError):
    """A source that can never be downloaded; the message names it and says what to do."""


@dataclass(frozen=True)
class Source:
    kind: Literal["youtube", "http", "file"]
    # "yt-<video id>", "url-<sha256 of the normalised URL>" or "file-<sha256 of the content>",
    # 16 hex digits each: stable across runs and safe as a file name.
    key: str
    # The canonical watch URL, the normalised http(s) URL, or the absolute local path.
    location: str


def _shown(text: str) -> str:
    """The input as it appears in a one-line message: quoted, escaped, bounded."""
    return repr(text if len(text) <= 200 else text[:197] + "...")


def _is_youtube_host(host: str) -> bool:
    return host in _YOUTUBE_HOSTS or host.endswith(".youtube.com")  # www., m., music., ...


def _valid_id(candidate: str | None) -> str | None:
    return candidate if candidate and _YOUTUBE_ID.fullmatch(candidate) else None


def youtube_id(url: str) -> str | None:
    """The 11-character video id of any YouTube video URL; None if not a YouTube video URL.

    Playlist (&list=), start time (&t=) and share (si=) parameters are ignored.
    """
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not _is_youtube_host(host):
        return None
    segments = [s for s in parts.path.split("/") if s]
    if host.endswith("youtu.be"):
        return _valid_id(segments[0] if segments else None)
    if segments[:1] == ["watch"] or not segments:
        return _valid_id(parse_qs(parts.query).get("v", [None])[0])
    if len(segments) >= 2 and segments[0] in _ID_PATHS and segments[1] != "videoseries":
        return _valid_id(segments[1])  # embed/videoseries?list= is a playlist, not a video id
    return None


def _sha16(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _youtube(video_id: str) -> Source:
    return Source("youtube", f"yt-{video_id}", f"https://www.youtube.com/watch?v={video_id}")


def _normalised_url(parts: SplitResult) -> str:
    """Scheme and host lower-cased, default port and fragment dropped: one key per resource.

    Raises ValueError on a malformed port.
    """
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _parse_url(text: str) -> Source:
    try:
        parts = urlsplit(text)
        location = _normalised_url(parts)
    except ValueError as exc:
        raise InvalidSourceError(f"malformed URL {_shown(text)} ({exc}): check it and try again") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        hint = "give the local path instead" if scheme == "file" else "use an http(s) URL or a local file"
        raise InvalidSourceError(f"unsupported URL scheme {scheme!r} in {_shown(text)}: {hint}")
    host = (parts.hostname or "").lower()
    if not host or any(c.isspace() for c in text):
        raise InvalidSourceError(f"malformed URL {_shown(text)}: it needs a host and no spaces")
    if _is_youtube_host(host):
        video_id = youtube_id(text)
        if video_id is None:
            raise InvalidSourceError(
                f"YouTube URL {_shown(text)} names no video (a playlist, channel or search page?): "
                "give one video's URL, e.g. https://www.youtube.com/watch?v=<id>"
            )
        return _youtube(video_id)
    return Source("http", f"url-{_sha16(location.encode())}", location)


def _parse_file(text: str) -> Source:
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        raise InvalidSourceError(f"{_shown(text)} is a folder: give one video file (or a URL)")
    if not path.is_file():
        raise InvalidSourceError(
            f"no such file {_shown(text)}: give an existing video file, or a URL with http:// or https://"
        )
    if path.stat().st_size == 0:
        raise InvalidSourceError(f"file {_shown(text)} is empty: give a complete video file")
    try:
        key = f"file-{file_sha256(path)[:16]}"
    except OSError as exc:
        raise InvalidSourceError(
            f"cannot read file {_shown(text)} ({exc.strerror}): check its permissions"
        ) from exc
    return Source("file", key, str(path))


def parse_source(text: str) -> Source:
    """A YouTube video URL, an http(s) URL or a local video file, validated.

    Raises InvalidSourceError, with a one-line message naming the input, for anything else.
    """
    raw = text.strip()
    if not raw:
        raise InvalidSourceError(
            f"empty source {_shown(text)}: give a YouTube URL, an http(s) URL or a local video file"
        )
    scheme = _SCHEME.match(raw)
    # "name:with:colons.mp4" may be a real file; anything else with a scheme is a URL.
    if scheme and (raw[scheme.end() :].startswith("//") or not Path(raw).exists()):
        return _parse_url(raw)
    if not Path(raw).exists() and (video_id := youtube_id(f"https://{raw}")):
        return _youtube(video_id)  # "youtu.be/<id>" typed without the scheme
    return _parse_file(raw)


def short_name(source: Source) -> str:
    """A source's name before its title is known: the file's or the URL path's stem, or the YouTube id."""
    if source.kind == "file":
        return Path(source.location).stem
    if source.kind == "http":
        parts = urlsplit(source.location)
        return PurePosixPath(unquote(parts.path)).stem or parts.hostname or source.key
    return source.key.removeprefix("yt-")
