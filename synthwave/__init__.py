"""ai-synthwave's ground layer: settings, errors, atomic writes, digests, the frame record.

It imports nothing of the project; gan/ and tasks/ build on it, flows/ on those, cli/ on top.
Imported before Prefect by flows/, tasks/ and cli/: a local server or client sends no
telemetry (Prefect's default does) unless the user's environment turns it back on, and the
temporary server Prefect starts without PREFECT_API_URL gets 3 minutes, not 20 s, to come
up: its first start migrates a new SQLite database, slower than 20 s on a loaded 2-core machine.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
