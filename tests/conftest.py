"""Shared fixtures: a real Prefect server (temporary SQLite), loopback servers, sample videos."""

import atexit
import os
import shutil
import tempfile

# Before Prefect is imported anywhere: a private Prefect home (removed at exit), no telemetry, quiet TF.
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="synthwave-prefect-home-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gan  # noqa: E402,F401  (before any test module imports TensorFlow: the product's kernels)
import pytest  # noqa: E402

from tests.loopback import loopback_only, sample_videos, video_server  # noqa: E402,F401


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API server with a temporary database, shared by the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
