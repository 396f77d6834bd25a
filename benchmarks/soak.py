"""Faults that take longer than a CI test: the Prefect server restarting under a flow run.

    python -m benchmarks.soak

A real `prefect server start` on a free 127.0.0.1 port with its own SQLite database; an
ingest flow run in its own process against it (sources on a loopback HTTP server, one of
them stalling mid-body, and a long local video extracted at every frame); the server is
killed with SIGKILL mid-run and started again on the same port and database, once after a
short outage and once after one longer than the client's retries. Then the run's
outcome is read and the ingest rerun: it must complete with the cached work kept (no second
download of what the first run finished) and every manifest must match its checksums.
Prints one row per check; exits 1 if any fails. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "videos"
STALL_S = 20  # the stalled download outlives the server's downtime
# How long the server stays dead: within the client's retries, and well past them.
DOWN_S = (8, 150)
RUN_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the Prefect server did not start; see {log}")
        time.sleep(0.5)


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def start_ingest(api: str, home: Path, settings: dict, sources: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home / "client"), "DO_NOT_TRACK": "1"}
    args = [sys.executable, "-m", "tests.reliability.ingest_child", json.dumps(settings), *sources]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(process: subprocess.Popen) -> tuple[dict, str]:
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return {"state": "HUNG", "message": f"no result in {RUN_TIMEOUT_S} s"}, err
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return {"state": f"EXIT {process.returncode}", "message": err.strip().splitlines()[-1:]}, err
    return json.loads(lines[-1]), err


def scenario(down_s: float, rows: list[tuple[str, str, str, bool]]) -> None:
    """One ingest run with the server killed under it for `down_s` seconds, then a rerun."""
    from tasks.shards import verify_manifest
    from tasks.sources import parse_source
    from tests.loopback import VideoServer
    from tests.reliability.helpers import gradient, make_video

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, VideoServer() as videos:
        tmp_path = Path(tmp)
        home = tmp_path / "server"
        home.mkdir()
        log = tmp_path / "server.log"
        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        server = start_server(home, port, log)

        bottle = (VIDEOS / "bottle-detection.mp4").read_bytes()
        stalled = videos.stall("/bottle.mp4", bottle, after=len(bottle) // 2, seconds=STALL_S)
        milk = videos.serve("/milk.mkv", VIDEOS / "milk.mkv", "video/x-matroska")
        long_video = make_video(tmp_path / "long.avi", [gradient(240, 320, i) for i in range(900)])
        sources = [stalled, milk, str(long_video)]
        data = tmp_path / "data"
        settings = {
            "data_dir": str(data),
            "frames": {"every": 1, "size": [64, 96]},
            "download": {"retries": 2, "retry_delay_s": 1, "timeout_s": 60, "allowed_hosts": ["127.0.0.1"]},
            "shard_mb": 0.2,
        }

        started = time.monotonic()
        first = start_ingest(api, tmp_path, settings, sources)
        while videos.count("/bottle.mp4") < 1 and first.poll() is None:
            time.sleep(0.1)
        time.sleep(1.0)
        kill_group(server)
        killed_at = time.monotonic() - started
        time.sleep(down_s)
        server = start_server(home, port, log)
        restarted_at = time.monotonic() - started
        result, err = outcome(first)
        videos.serve("/bottle.mp4", bottle)  # no stall for the rerun
        paths = {"/bottle.mp4": stalled, "/milk.mkv": milk}
        counts_after_first = {p: videos.count(p) for p in paths}
        done_first = {p for p, url in paths.items() if list((data / "downloads").glob(f"{parse_source(url).key}.*"))}
        first_s = time.monotonic() - started

        rerun_started = time.monotonic()
        second, err2 = outcome(start_ingest(api, tmp_path, settings, sources))
        rerun_s = time.monotonic() - rerun_started
        counts_after_rerun = {p: videos.count(p) for p in paths}
        kill_group(server)

        manifests = sorted(
            m for m in (data / "shards").rglob("manifest.json") if not any(p.startswith(".") for p in m.parts)
        )
        sound = bool(manifests) and all(verify_manifest(m) for m in manifests)
        dataset = json.loads((data / "dataset.json").read_text()) if (data / "dataset.json").is_file() else {}

        name = f"server down {down_s:g} s"
        print(f"{name}: killed {killed_at:.1f} s into the run, back at {restarted_at:.1f} s; "
              f"first run ended after {first_s:.1f} s, rerun took {rerun_s:.1f} s")
        rows.append((f"{name}: run across the restart", "Completed, or Failed/Crashed (not hung)",
                     f"{result.get('state')}: {str(result.get('message'))[:140]}", result.get("state") != "HUNG"))
        rows.append((f"{name}: rerun", "COMPLETED", str(second.get("state")), second.get("state") == "COMPLETED"))
        again = {p: counts_after_rerun[p] - counts_after_first[p] for p in sorted(done_first)}
        rows.append((f"{name}: downloads the first run finished, fetched again", "none",
                     json.dumps(again), not any(again.values())))
        rows.append((f"{name}: manifests vs checksums", "all sound", f"{len(manifests)} manifests, sound={sound}",
                     sound))
        rows.append((f"{name}: dataset.json", "3 videos", f"{len(dataset.get('videos', []))} videos",
                     len(dataset.get("videos", [])) == 3))
        if result.get("state") != "COMPLETED":
            print("first run's stderr (tail):\n" + "\n".join(err.strip().splitlines()[-8:]))
        if second.get("state") != "COMPLETED":
            print("rerun's stderr (tail):\n" + "\n".join(err2.strip().splitlines()[-15:]))


def main() -> int:
    if not (VIDEOS / "milk.mkv").is_file():
        raise SystemExit(f"sample videos not found at {VIDEOS}")
    rows: list[tuple[str, str, str, bool]] = []
    for down_s in DOWN_S:
        scenario(down_s, rows)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'case'.ljust(width)} | expected | observed | ok")
    for case, expected, observed, ok in rows:
        print(f"{case.ljust(width)} | {expected} | {observed} | {'yes' if ok else 'NO'}")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
