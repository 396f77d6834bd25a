"""parse_source and youtube_id: every YouTube URL form, stable safe keys, clear refusals."""

from __future__ import annotations

import hashlib
import re

import pytest

from tasks.sources import InvalidSourceError, Source, parse_source, youtube_id
from tests.loopback import sample_videos  # noqa: F401  (fixture)

VID = "dQw4w9WgXcQ"
WATCH = f"https://www.youtube.com/watch?v={VID}"
KEY = re.compile(r"(yt-[A-Za-z0-9_-]{11}|url-[0-9a-f]{16}|file-[0-9a-f]{16})")


@pytest.mark.parametrize(
    "url",
    [
        WATCH,
        f"http://youtube.com/watch?v={VID}",
        f"https://m.youtube.com/watch?v={VID}",
        f"https://music.youtube.com/watch?v={VID}&feature=share",
        f"https://WWW.YouTube.com/watch?v={VID}",
        f"https://www.youtube.com/watch?v={VID}&list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG&index=2",
        f"https://www.youtube.com/watch?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG&v={VID}",
        f"https://www.youtube.com/watch?v={VID}&t=42s",
        f"https://www.youtube.com/watch?v={VID}#t=1m2s",
        f"https://youtu.be/{VID}",
        f"https://youtu.be/{VID}?si=AbCdEfGhIjKlMnOp",
        f"https://youtu.be/{VID}?t=42&si=AbCdEfGhIjKlMnOp",
        f"https://www.youtube.com/shorts/{VID}",
        f"https://youtube.com/shorts/{VID}?si=AbCdEfGhIjKlMnOp",
        f"https://www.youtube.com/embed/{VID}?start=10",
        f"https://www.youtube-nocookie.com/embed/{VID}",
        f"https://www.youtube.com/live/{VID}?si=AbCdEfGhIjKlMnOp",
        f"https://www.youtube.com/v/{VID}",
        f"  {WATCH}  ",
    ],
)
def test_every_youtube_form_gives_the_id_and_one_canonical_source(url):
    assert youtube_id(url) == VID
    assert parse_source(url) == Source("youtube", f"yt-{VID}", WATCH)


def test_ids_with_dash_and_underscore_survive():
    assert parse_source("https://youtu.be/-_aB3_-xY9z").key == "yt--_aB3_-xY9z"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/watch?v=dQw4w9WgXcQ",  # not YouTube
        "https://notyoutube.com/watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com/playlist?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG",
        "https://www.youtube.com/@SomeChannel",
        "https://www.youtube.com/watch?v=tooShort",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ0",  # 12 characters
        "https://youtu.be/",
        "ftp://youtu.be/dQw4w9WgXcQ",
        "not a url",
    ],
)
def test_youtube_id_is_none_without_a_video(url):
    assert youtube_id(url) is None


def test_youtube_url_typed_without_scheme():
    assert parse_source(f"youtu.be/{VID}").key == f"yt-{VID}"
    assert parse_source(f"www.youtube.com/watch?v={VID}").key == f"yt-{VID}"


def test_http_key_is_stable_and_ignores_case_default_port_and_fragment():
    a = parse_source("https://Cdn.Example.com:443/clips/a.mp4?sig=1#t=3")
    b = parse_source("https://cdn.example.com/clips/a.mp4?sig=1")
    assert a == b
    assert a.kind == "http"
    assert a.location == "https://cdn.example.com/clips/a.mp4?sig=1"
    assert a.key == "url-" + hashlib.sha256(a.location.encode()).hexdigest()[:16]
    # Path and query are part of the resource: different keys.
    assert parse_source("https://cdn.example.com/clips/A.mp4?sig=1").key != a.key
    assert parse_source("https://cdn.example.com/clips/a.mp4?sig=2").key != a.key
    other_port = "http://cdn.example.com:8080/clips/a.mp4"
    assert parse_source(other_port).location == other_port


def test_keys_never_contain_url_text():
    nasty = "https://example.com/../../etc/passwd/..%2f..%2f/x.mp4?a=/../b"
    source = parse_source(nasty)
    assert KEY.fullmatch(source.key)
    assert "/" not in source.key and ".." not in source.key


def test_file_key_is_the_content_hash_and_location_absolute(tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 9000)  # > one hash chunk
    twin = tmp_path / "other name.mkv"
    twin.write_bytes(clip.read_bytes())
    monkeypatch.chdir(tmp_path)

    source = parse_source("clip.mp4")
    assert source.kind == "file"
    assert source.location == str(clip.resolve())
    assert source.key == "file-" + hashlib.sha256(clip.read_bytes()).hexdigest()[:16]
    assert parse_source(str(twin)).key == source.key  # same bytes, same key
    twin.write_bytes(clip.read_bytes() + b"!")
    assert parse_source(str(twin)).key != source.key


def test_a_file_whose_name_looks_like_a_scheme_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "take:2.mp4").write_bytes(b"video")
    monkeypatch.chdir(tmp_path)
    assert parse_source("take:2.mp4").kind == "file"


def test_real_sample_video_parses(sample_videos):
    source = parse_source(str(sample_videos / "bottle-detection.mp4"))
    assert source.kind == "file" and KEY.fullmatch(source.key)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("file:///etc/passwd", "local path"),
        ("ftp://example.com/a.mp4", "scheme 'ftp'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("data:video/mp4;base64,AAAA", "scheme 'data'"),
        ("https://www.youtube.com/playlist?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG", "names no video"),
        ("https://www.youtube.com/@SomeChannel/videos", "names no video"),
        ("https://youtu.be/", "names no video"),
        ("http://", "needs a host"),
        ("https://exa mple.com/a.mp4", "no spaces"),
        ("https://example.com:99999/a.mp4", "malformed"),
        ("https://[::1/a.mp4", "malformed"),
        ("   ", "empty source"),
        ("example.com/a.mp4", "http://"),  # a URL without a scheme reads as a missing file
    ],
)
def test_bad_inputs_are_refused_with_a_one_line_message_naming_them(text, says):
    with pytest.raises(InvalidSourceError) as caught:
        parse_source(text)
    message = str(caught.value)
    assert repr(text) in message
    assert says in message
    assert "\n" not in message


def test_bad_local_paths_are_refused_naming_the_path(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    cases = {
        str(tmp_path / "missing.mp4"): "no such file",
        str(tmp_path): "is a folder",
        str(empty): "is empty",
    }
    for text, says in cases.items():
        with pytest.raises(InvalidSourceError, match=re.escape(says)) as caught:
            parse_source(text)
        assert repr(text) in str(caught.value)


def test_newlines_in_input_keep_the_message_on_one_line():
    with pytest.raises(InvalidSourceError) as caught:
        parse_source("ftp://a\nb")
    assert "\n" not in str(caught.value)


def test_invalid_source_error_is_a_value_error():
    assert issubclass(InvalidSourceError, ValueError)

