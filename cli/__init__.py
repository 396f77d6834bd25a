"""The top layer: the `synthwave` command (main.py), the local stack it starts (stack.py) and
the run report (report.py). Imports flows/, tasks/ and gan/; nothing imports it."""

import synthwave  # noqa: F401  (before Prefect: telemetry off by default)
