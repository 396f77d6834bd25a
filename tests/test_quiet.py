"""TensorFlow's native start-up lines stay off a normal run's terminal; real errors and --verbose do not."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Imports TensorFlow (its start-up lines), then fails on the run dir as a user would see it.
PROBE = [sys.executable, "-m", "cli.main", "generate", "--run-dir", "no-such-run", "--out", "x.png"]
NATIVE = ("absl::InitializeLog", "oneDNN custom operations", "cuInit", "Could not find cuda drivers")


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def without_log_level() -> dict:
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def test_a_normal_run_hides_tensorflows_native_lines_and_keeps_the_error() -> None:
    result = run(PROBE, without_log_level())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: run dir no-such-run not found: give --run-dir a training run directory"]


def test_verbose_shows_them() -> None:
    result = run(PROBE[:3] + ["--verbose"] + PROBE[3:], without_log_level())
    assert result.returncode == 2 and "error: run dir no-such-run not found" in result.stderr
    assert any(line in result.stderr for line in NATIVE), result.stderr


def test_the_filter_passes_every_other_native_line_in_order() -> None:
    probe = (
        "import os, sys; from cli.quiet import quiet_native_logs; quiet_native_logs(); "
        "os.write(2, b'E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL\\n'); "
        "os.write(2, b'F0000 a real native failure\\n'); "
        "os.write(2, b'E0000 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT\\n'); "
        "print('python error', file=sys.stderr); os.write(2, b'last native line\\n')"
    )
    result = run([sys.executable, "-c", probe], without_log_level())
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert sorted(lines) == sorted(["F0000 a real native failure", "python error", "last native line"]), lines
    assert lines.index("F0000 a real native failure") < lines.index("last native line")
