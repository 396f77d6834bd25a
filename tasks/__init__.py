"""Pipeline steps: plain functions, each wrapped as a Prefect task in flows' use."""

import synthwave  # noqa: F401  (before Prefect: telemetry off by default)
