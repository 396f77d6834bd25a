"""The command line: flags generated from the settings, one-line errors, exit codes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import build_parser, ingest_settings, main, train_settings

REPO = Path(__file__).resolve().parents[1]


def test_flags_map_onto_nested_settings():
    args = build_parser().parse_args(
        ["ingest", "a.mp4", "--data-dir", "d", "--every", "10", "--size", "32x56", "--downloader", "pytube",
         "--max-height", "480", "--shard-mb", "5"]
    )
    settings = ingest_settings(args)
    assert settings.frames.every == 10 and settings.frames.size == (32, 56)
    assert settings.download.downloader == "pytube" and settings.download.max_height == 480
    assert settings.shard_mb == 5.0 and str(settings.data_dir) == "d"
    assert train_settings(build_parser().parse_args(["train", "--steps", "7"])).schedule.steps == 7


def test_curation_is_on_by_default_and_each_part_can_be_turned_off():
    def frames(*flags: str):
        return ingest_settings(build_parser().parse_args(["ingest", "a.mp4", *flags])).frames

    assert (frames().dedupe, frames().drop_blank, frames().dedupe_distance) == (True, True, 10)
    assert (frames("--no-dedupe").dedupe, frames("--no-dedupe").drop_blank) == (False, True)
    assert (frames("--keep-blank").dedupe, frames("--keep-blank").drop_blank) == (True, False)
    assert frames("--dedupe", "false", "--dedupe-distance", "4").dedupe is False
    assert frames("--dedupe-distance", "4").dedupe_distance == 4
    assert (frames().colour_distance, frames("--colour-distance", "5").colour_distance) == (10.0, 5.0)


def test_label_smoothing_defaults_to_bce_only_and_hinge_refuses_it_when_asked(capsys):
    def parsed(*flags: str):
        return train_settings(build_parser().parse_args(["train", *flags]))

    assert (parsed().optimisation.loss, parsed().optimisation.label_smoothing) == ("bce", 0.1)
    assert parsed("--loss", "hinge").optimisation.label_smoothing == 0.0
    assert parsed("--loss", "hinge", "--label-smoothing", "0").optimisation.label_smoothing == 0.0
    assert main(["train", "--loss", "hinge", "--label-smoothing", "0.2"]) == 2
    assert "label_smoothing applies to loss bce only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "x.mp4", "--every", "-3"], "setting frames.every: Input should be greater than 0"),
        (["ingest", "x.mp4", "--size", "big"], "setting frames.size"),
        (["ingest", "x.mp4", "--downloader", "wget"], "setting download.downloader"),
        (["train", "--batch-size", "many"], "setting schedule.batch_size"),
    ],
)
def test_bad_settings_name_the_key(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_flag_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", "x.mp4", "--evry", "3"])
    assert exit_info.value.code == 2
    assert "--evry" in capsys.readouterr().err


def test_every_command_has_help():
    for command in ("ingest", "train", "generate", "walk", "report", "demo"):
        result = subprocess.run([sys.executable, "-m", "cli.main", command, "--help"], cwd=REPO,
                                capture_output=True, text=True, check=True)
        assert "usage: synthwave " + command in result.stdout


def test_walk_help_shows_sizes_as_typed_and_required_flags(capsys):
    with pytest.raises(SystemExit):
        main(["walk", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--size SIZE Frame size HxW, both even (MPEG-4) (default: 360x640)" in help_text
    assert "(required)" in help_text and "mp4v" in help_text


def test_ingest_exit_status_and_one_line_per_failed_source(prefect_server, sample_videos, tmp_path):
    from prefect.settings import PREFECT_API_URL

    good = shutil.copy(sample_videos / "milk.mkv", tmp_path / "milk.mkv")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(good), str(empty), "ftp://host/x.mp4",
         "--data-dir", str(tmp_path / "data"), "--every", "25", "--size", "32x56", "--no-dedupe"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 3 sources failed") and "empty.mp4" in last and "ftp://host/x.mp4" in last
    assert (tmp_path / "data" / "dataset.json").is_file()


def test_prefect_sends_no_telemetry_and_waits_for_its_first_server_unless_the_environment_says():
    """The console script and `python -m benchmarks...` run without ./dev's exports too."""
    probe = (
        "import flows.ingest, os; from prefect.settings import get_current_settings as s; "
        "print(s().server.analytics_enabled, os.environ['DO_NOT_TRACK'], s().server.ephemeral.startup_timeout_seconds)"
    )
    ours = ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "1", "180"]
    # A user who says otherwise is obeyed.
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="true", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="30")
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["True", "1", "30"]


def test_the_stacks_hints_run_as_printed(tmp_path):
    """Each command the hints name is one a shell finds: bare on PATH, else by its full path."""
    from cli.stack import Stack, next_steps

    stack = Stack(home=tmp_path / "stack", port=4299, env={})
    hints = next_steps(stack)
    commands = [line.split()[0] for line in hints.splitlines() if " deployment run " in line or " deploy --all" in line]
    commands.append(hints.split("Stop it all: ")[1].split()[0])
    assert len(commands) == 4
    for name in commands:
        found = shutil.which(name)
        assert found and Path(found).name in ("prefect", "synthwave"), name
    assert f"--home {(tmp_path / 'stack').resolve()}" in hints
    stop = hints.split("Stop it all: ")[1].split()
    assert subprocess.run([stop[0], "stack", "--help"], capture_output=True).returncode == 0
