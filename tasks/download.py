"""Fetch a Source to a local video file (how a failure is classified: tasks/download_errors.py).

A download is staged in a hidden folder inside downloads_dir and renamed to
`<key><ext>` only once complete, so a file under its final name is always whole; the note
beside it records its size, so a file cut short or replaced afterwards is detected
(`is_complete`) and fetched again.

Where a direct URL may lead is checked before every request, redirects included
(`check_destination`): only public addresses by default, only YouTube and the listed hosts
with DownloadSettings.allowed_hosts, so a parameter cannot point a worker at internal
services or cloud metadata. Nothing here runs a shell.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import cv2
import deno
import httpx
import yt_dlp
import yt_dlp.utils
from pytubefix import Stream, YouTube

from synthwave.atomic import sweep_temp_dirs, temp_dir, write_json
from synthwave.settings import DownloadSettings
from tasks.download_errors import (
    DownloadError,
    PermanentDownloadError,
    TransientDownloadError,
    describe,
    pytube_error,
    status_error,
    ytdlp_error,
)
from tasks.sources import Source

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_REDIRECTS = 10
# Always allowed, with their subdomains: YouTube sources never leave these.
_YOUTUBE_DOMAINS = ("youtube.com", "youtu.be", "youtube-nocookie.com", "googlevideo.com")
_VIDEO_SUFFIXES = {
    ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".flv", ".ts", ".mpg", ".mpeg", ".3gp", ".ogv",
}  # fmt: skip
_TYPE_SUFFIXES = {
    "video/mp4": ".mp4", "video/x-m4v": ".m4v", "video/x-matroska": ".mkv", "video/webm": ".webm",
    "video/quicktime": ".mov", "video/x-msvideo": ".avi", "video/x-flv": ".flv", "video/mp2t": ".ts",
    "video/mpeg": ".mpg", "video/3gpp": ".3gp", "video/ogg": ".ogv",
}  # fmt: skip
# Bodies OpenCV's FFmpeg would open as a one-frame "video" (or might), whatever their Content-Type.
_NOT_VIDEO_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"), (b"<!doctype html", "an HTML page"), (b"<html", "an HTML page"),
)  # fmt: skip
@dataclass(frozen=True)
class Video:
    key: str
    path: Path
    title: str
    source: str  # the Source.location it came from


def download(source: Source, settings: DownloadSettings, downloads_dir: Path) -> Video:
    """The local video file for `source`: a local file as is, anything else downloaded once.

    A complete earlier download in downloads_dir is reused without a request (see _cached).
    """
    if source.kind == "file":
        path = Path(source.location)
        return Video(source.key, path, path.stem, source.location)
    if cached := _cached(source, settings, downloads_dir):
        return cached
    downloads_dir.mkdir(parents=True, exist_ok=True)
    sweep_temp_dirs(downloads_dir / source.key)
    fetch = _fetch_http if source.kind == "http" else _YOUTUBE_BACKENDS[settings.downloader]
    staging = temp_dir(downloads_dir / source.key)
    try:
        file, title = fetch(source, settings, staging)
        return _publish(file, title, source, settings, downloads_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- the download folder ------------------------------------------------------------------


def _note_path(downloads_dir: Path, key: str) -> Path:
    # Hidden, so that `<key>.*` matches the video alone.
    return downloads_dir / f".{key}.json"


def _cached(source: Source, settings: DownloadSettings, downloads_dir: Path) -> Video | None:
    """The earlier download of `source`, if it is what these settings would fetch now.

    Final names appear only by rename after a complete download, so one that exists is
    whole. An http(s) URL is taken to name fixed content (delete the file to refetch). A
    YouTube download also depends on max_height, so it is reused only when the note written
    beside it records the same output digest.
    """
    found = _on_disk(source, downloads_dir)
    if found is None:
        return None
    path, note = found
    if source.kind == "youtube" and note.get("output") != settings.output_digest():
        return None
    if not _whole(path, note):
        return None  # cut short or replaced since: fetch it again
    return Video(source.key, path, note.get("title") or path.stem, source.location)


def _on_disk(source: Source, downloads_dir: Path) -> tuple[Path, dict] | None:
    """The published download of `source` and the note beside it ({} if unreadable), if any."""
    finals = sorted(downloads_dir.glob(f"{source.key}.*"))
    if not finals:
        return None
    try:
        note = json.loads(_note_path(downloads_dir, source.key).read_text())
    except (OSError, ValueError):
        note = {}
    return finals[0], note if isinstance(note, dict) else {}


def _whole(path: Path, note: dict) -> bool:
    """The file has the size its note recorded (notes from before sizes were kept: any size)."""
    try:
        size = path.stat().st_size
    except OSError:
        return False
    expected = note.get("bytes")
    return size > 0 and (not isinstance(expected, int) or size == expected)


def is_complete(source: Source, downloads_dir: Path) -> bool:
    """True if `source` needs no download: a local file that exists, or a download on disk
    with the size recorded when it was published. The ingest flow recomputes a cached
    download when this is False, so a deleted or truncated file is fetched again."""
    if source.kind == "file":
        return Path(source.location).is_file()
    found = _on_disk(source, downloads_dir)
    return found is not None and _whole(*found)


def _publish(
    file: Path, title: str, source: Source, settings: DownloadSettings, downloads_dir: Path
) -> Video:
    """Move a complete staged file to `<key><ext>`, drop other extensions of the key, note it."""
    final = downloads_dir / f"{source.key}{file.suffix.lower()}"
    with open(file, "rb+") as handle:
        os.fsync(handle.fileno())  # on disk before the rename makes it look complete
    size = file.stat().st_size
    os.replace(file, final)
    for stale in downloads_dir.glob(f"{source.key}.*"):
        if stale != final:
            stale.unlink(missing_ok=True)
    # After the rename: a crash in between leaves an old note, which only costs a re-download.
    write_json(
        _note_path(downloads_dir, source.key),
        {"title": title, "source": source.location, "output": settings.output_digest(), "bytes": size},
    )
    return Video(source.key, final, title, source.location)


# -- errors ---------------------------------------------------------------------------------


class _Pace:
    """The whole-download deadline and the minimum average rate, checked as bytes arrive: a
    per-read timeout alone lets a server that drips a byte at a time hold a worker forever."""

    def __init__(self, source: Source, settings: DownloadSettings) -> None:
        self.where, self.settings = source.location, settings
        self.deadline = settings.download_deadline_s()
        self.start = time.monotonic()

    def check(self, received: int) -> None:
        elapsed = time.monotonic() - self.start
        if self.deadline is not None and elapsed > self.deadline:
            raise TransientDownloadError(
                f"{self.where}: not finished after {elapsed:.0f} s ({received} bytes; deadline_s is {self.deadline:g})"
            )
        rate = self.settings.min_bytes_per_s
        if elapsed > self.settings.timeout_s and received < rate * elapsed:
            raise TransientDownloadError(
                f"{self.where}: too slow ({received} bytes in {elapsed:.0f} s; min_bytes_per_s is {rate:g})"
            )


# -- http(s) ---------------------------------------------------------------------------------


def _fetch_http(source: Source, settings: DownloadSettings, staging: Path) -> tuple[Path, str]:
    where = source.location
    try:
        with (
            httpx.Client(
                timeout=settings.timeout_s,
                follow_redirects=True,
                max_redirects=_MAX_REDIRECTS,
                # Raw bytes are the file, and Content-Length counts them.
                headers={"Accept-Encoding": "identity"},
                # Before every request, each redirect's included.
                event_hooks={"request": [lambda request: check_destination(request.url, settings, where)]},
            ) as client,
            client.stream("GET", where) as response,
        ):
            _check_response(source, settings, response)
            path = staging / f"video{_suffix(response)}"
            _save(source, settings, response, path)
        _check_video(source, settings, path)
    except httpx.TooManyRedirects as exc:
        raise PermanentDownloadError(f"{where}: redirect loop (over {_MAX_REDIRECTS} redirects)") from exc
    except httpx.UnsupportedProtocol as exc:
        raise PermanentDownloadError(f"{where}: redirected to an unsupported URL ({describe(exc)})") from exc
    except httpx.TransportError as exc:
        # Connection refused/reset, timeouts, and a body cut short of its Content-Length
        # (h11 raises RemoteProtocolError for that) are all worth another try.
        raise TransientDownloadError(f"{where}: {describe(exc)}") from exc
    return path, _url_title(source.location)


def _check_response(source: Source, settings: DownloadSettings, response: httpx.Response) -> None:
    status = response.status_code
    if status >= 400:
        raise status_error(source.location, status, f"HTTP {status} {response.reason_phrase}")
    if status != 200:
        raise PermanentDownloadError(
            f"{source.location}: unexpected HTTP {status} {response.reason_phrase}"
        )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith(("text/", "image/")) or content_type == "application/json":
        raise PermanentDownloadError(f"{source.location}: not a video (Content-Type {content_type})")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > settings.max_bytes:
        raise PermanentDownloadError(
            f"{source.location}: too large ({int(length)} bytes; max_bytes is {settings.max_bytes})"
        )


def _save(source: Source, settings: DownloadSettings, response: httpx.Response, path: Path) -> None:
    written, pace = 0, _Pace(source, settings)
    with open(path, "wb") as out:
        for chunk in response.iter_bytes():  # as they arrive: a 1 MB chunk would wait for 1 MB
            written += len(chunk)
            if written > settings.max_bytes:  # no or a lying Content-Length
                raise PermanentDownloadError(
                    f"{source.location}: too large (over max_bytes, {settings.max_bytes} bytes)"
                )
            pace.check(written)
            out.write(chunk)


def _check_video(source: Source, settings: DownloadSettings, path: Path) -> None:
    """Refuse a body OpenCV cannot decode a frame of, or one longer than max_duration_s.

    A video type is no proof: refused here, nothing is published, so a rerun asks again
    instead of reusing a file the frame step can never read.
    """
    with open(path, "rb") as handle:
        head = handle.read(64)
    for magic, what in _NOT_VIDEO_MAGIC:
        if head.lstrip().lower().startswith(magic) if what == "an HTML page" else head.startswith(magic):
            raise PermanentDownloadError(f"{source.location}: not a video (the body is {what})")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        raise PermanentDownloadError(f"{source.location}: not a video (the body is a WebP image)")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened() or not capture.grab():
            raise PermanentDownloadError(f"{source.location}: not a video (OpenCV cannot decode a frame of it)")
        frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    limit = settings.max_duration_s
    if limit is not None and fps > 0 and frames > 0 and frames / fps > limit:
        raise PermanentDownloadError(_too_long(source, frames / fps, limit))


def _too_long(source: Source, seconds: float, limit: float) -> str:
    return f"{source.location}: too long ({seconds:.0f} s; max_duration_s is {limit:g})"


# -- where a direct URL may lead ---------------------------------------------------------------


def _is_youtube(host: str) -> bool:
    return any(host == domain or host.endswith(f".{domain}") for domain in _YOUTUBE_DOMAINS)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.split("%")[0])  # fe80::1%eth0
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal: itself)."""
    if literal := _address(host):
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [address for info in infos if (address := _address(str(info[4][0]))) is not None]


def _is_public(address: IPAddress) -> bool:
    """Not private, loopback, link-local (169.254.169.254: cloud metadata), reserved, shared
    or multicast: an address on the internet."""
    return address.is_global and not address.is_multicast


def _name_listed(host: str, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        if entry.startswith(("*.", ".")):
            suffix = entry.lstrip("*")
            if host.endswith(suffix) or host == suffix[1:]:
                return True
        elif host == entry.strip("[]"):
            return True
    return False


def _networks(allowed: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in allowed:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            continue  # a host name
    return networks


def check_destination(url: httpx.URL | str, settings: DownloadSettings, where: str) -> None:
    """Refuse a URL this worker must not fetch; PermanentDownloadError names it and the fix.

    YouTube hosts are always allowed. With allowed_hosts None any host whose every address
    is public is allowed; private, loopback, link-local and reserved addresses are refused.
    With a list, only YouTube and the listed hosts (names, `.suffix`, or IPs and CIDR
    networks for IP-literal URLs; private ones included) are allowed.
    Limit: the check resolves the name, the connection resolves it again; a DNS server that
    answers differently the second time (rebinding) is not caught. List hosts to rule it out.
    """
    url = httpx.URL(str(url))
    host = (url.host or "").lower()
    if url.scheme not in ("http", "https"):
        raise PermanentDownloadError(f"{where}: refused {url.scheme}:// URL {str(url)[:200]!r}: http(s) only")
    if _is_youtube(host):
        return
    allowed = settings.allowed_hosts
    if allowed is not None:
        # A list: the name itself, or an IP literal in a listed network. No DNS, so a
        # name cannot be re-pointed into a listed range.
        literal = _address(host)
        if _name_listed(host, allowed) or (literal and any(literal in net for net in _networks(allowed))):
            return
        raise PermanentDownloadError(
            f"{where}: host {host!r} is not in download.allowed_hosts ({', '.join(allowed) or 'empty'}): "
            "add it there to download from it"
        )
    try:
        addresses = _resolve(host, url.port or (443 if url.scheme == "https" else 80))
    except (OSError, UnicodeError) as exc:
        raise TransientDownloadError(f"{where}: cannot resolve host {host!r} ({describe(exc)})") from exc
    if not addresses:
        raise TransientDownloadError(f"{where}: host {host!r} resolves to no address")
    blocked = [address for address in addresses if not _is_public(address)]
    if blocked:
        raise PermanentDownloadError(
            f"{where}: host {host!r} is at {blocked[0]}, a private, loopback, link-local or reserved "
            "address: refused; list it in download.allowed_hosts to allow it"
        )


def _suffix(response: httpx.Response) -> str:
    """Extension from the (final) URL's path, else the content type, else .mp4."""
    suffix = PurePosixPath(response.url.path).suffix.lower()
    if suffix in _VIDEO_SUFFIXES:
        return suffix
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return _TYPE_SUFFIXES.get(content_type, ".mp4")


def _url_title(url: str) -> str:
    parts = urlsplit(url)
    return PurePosixPath(unquote(parts.path)).stem or parts.hostname or url


# -- YouTube via yt-dlp ------------------------------------------------------------------------


def _ytdlp_options(source: Source, settings: DownloadSettings, staging: Path) -> dict[str, Any]:
    h = settings.max_height
    return {
        # Video-only is fine (we only need frames) and needs no ffmpeg merge.
        "format": (
            f"bestvideo[height<={h}][ext=mp4]/best[height<={h}][ext=mp4]"
            f"/bestvideo[height<={h}]/best[height<={h}]/best"
        ),
        "noplaylist": True,
        "quiet": True,
        "noprogress": True,
        "color": "no_color",  # error messages end up in Prefect logs and the UI
        # Not stdout: a Prefect worker's logging config decides where this goes.
        "logger": logging.getLogger("tasks.download.yt_dlp"),
        # `paths`, not the template: a '%' in downloads_dir must not be read as a field.
        "paths": {"home": str(staging)},
        "outtmpl": "video.%(ext)s",
        "socket_timeout": settings.timeout_s,
        # yt-dlp resumes a broken stream where it stopped, which is cheaper than a Prefect
        # retry from scratch; its Python API defaults both to 0.
        "retries": settings.retries,
        "fragment_retries": settings.retries,
        "retry_sleep_functions": {
            kind: lambda n: settings.retry_delay_s * 2**n for kind in ("http", "fragment")
        },
        "max_filesize": settings.max_bytes,  # checked against Content-Length up front
        "progress_hooks": [_ytdlp_guard(source, settings)],  # size and pace, while streaming
        # Before any media request, from the video's metadata.
        "match_filter": _ytdlp_duration_guard(source, settings.max_duration_s),
        "js_runtimes": js_runtimes(),
    }


def js_runtimes() -> dict[str, dict[str, str]]:
    """YouTube needs a JS runtime for its challenges; the deno wheel puts its binary in the
    venv's bin/, which is not on PATH when the venv is not activated, so name it."""
    try:
        return {"deno": {"path": deno.find_deno_bin()}}
    except FileNotFoundError:
        return {"deno": {}}  # yt-dlp looks on PATH


def _ytdlp_duration_guard(source: Source, limit: float | None) -> Callable[..., None]:
    def match_filter(info: dict[str, Any], *, incomplete: bool = False) -> None:
        duration = info.get("duration")
        if limit is not None and isinstance(duration, int | float) and duration > limit:
            raise PermanentDownloadError(_too_long(source, duration, limit))

    return match_filter


def _ytdlp_guard(source: Source, settings: DownloadSettings) -> Callable[[dict[str, Any]], None]:
    pace = _Pace(source, settings)

    def hook(progress: dict[str, Any]) -> None:
        received = progress.get("downloaded_bytes") or 0
        if received > settings.max_bytes:
            raise PermanentDownloadError(
                f"{source.location}: too large (over max_bytes, {settings.max_bytes} bytes)"
            )
        pace.check(received)

    return hook


def _fetch_ytdlp(source: Source, settings: DownloadSettings, staging: Path) -> tuple[Path, str]:
    try:
        with yt_dlp.YoutubeDL(_ytdlp_options(source, settings, staging)) as ydl:
            info = ydl.extract_info(source.location, download=True)
    except DownloadError:
        raise
    except yt_dlp.utils.YoutubeDLError as exc:
        raise ytdlp_error(source.location, exc) from exc
    saved = next((d.get("filepath") for d in info.get("requested_downloads") or []), None)
    if not saved or not Path(saved).is_file():
        # yt-dlp skips, without an error, a format whose Content-Length is over max_filesize.
        raise PermanentDownloadError(
            f"{source.location}: nothing downloaded (over max_bytes, {settings.max_bytes} bytes?)"
        )
    return Path(saved), info.get("title") or source.key


# -- YouTube via pytubefix -------------------------------------------------------------------


def _height(stream: Stream) -> int | None:
    if stream.height:
        return int(stream.height)
    match = re.match(r"(\d+)p", stream.resolution or "")
    return int(match.group(1)) if match else None


def _pick_stream(streams: list[Stream], max_height: int) -> Stream | None:
    """The highest mp4 video at or under max_height, else the lowest above it.

    At equal height a video-only (adaptive) stream wins: frames need no audio.
    """
    videos = [s for s in streams if s.includes_video_track and s.subtype == "mp4" and _height(s)]
    under = [s for s in videos if _height(s) <= max_height]
    if under:
        return max(under, key=lambda s: (_height(s), s.is_adaptive, s.bitrate or 0))
    return min(videos, key=lambda s: (_height(s), not s.is_adaptive, -(s.bitrate or 0)), default=None)


def _fetch_pytube(source: Source, settings: DownloadSettings, staging: Path) -> tuple[Path, str]:
    where = source.location
    streamed, pace = 0, _Pace(source, settings)

    def size_guard(stream: Stream, chunk: bytes, bytes_remaining: int) -> None:
        nonlocal streamed
        streamed += len(chunk)
        if streamed > settings.max_bytes:
            raise PermanentDownloadError(
                f"{where}: too large (over max_bytes, {settings.max_bytes} bytes)"
            )
        pace.check(streamed)

    try:
        youtube = YouTube(where, on_progress_callback=size_guard)
        stream = _pick_stream(list(youtube.streams), settings.max_height)
        limit = settings.max_duration_s
        if limit is not None and (youtube.length or 0) > limit:
            raise PermanentDownloadError(_too_long(source, youtube.length, limit))
        if stream is None:
            raise PermanentDownloadError(f"{where}: no mp4 video stream")
        if stream.filesize > settings.max_bytes:
            raise PermanentDownloadError(
                f"{where}: too large ({stream.filesize} bytes; max_bytes is {settings.max_bytes})"
            )
        saved = stream.download(
            output_path=str(staging), filename="video.mp4", skip_existing=False, timeout=settings.timeout_s
        )
        title = youtube.title
    except DownloadError:
        raise
    except Exception as exc:  # pytubefix raises anything from KeyError up when YouTube changes
        raise pytube_error(source.location, exc) from exc
    # pytubefix keeps what arrived of a cut-short body, and swallows a 404 mid-stream.
    got = Path(saved).stat().st_size if saved and Path(saved).is_file() else 0
    if got != stream.filesize:
        raise TransientDownloadError(f"{where}: incomplete download ({got} of {stream.filesize} bytes)")
    return Path(saved), title or source.key


_YOUTUBE_BACKENDS: dict[str, Callable[[Source, DownloadSettings, Path], tuple[Path, str]]] = {
    "yt-dlp": _fetch_ytdlp,
    "pytube": _fetch_pytube,
}
