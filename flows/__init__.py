"""Prefect flows: wiring of the steps in tasks/ and the trainer in gan/."""

import synthwave  # noqa: F401  (before Prefect: telemetry off by default)
