"""ai-synthwave: videos -> sharded TFRecords -> DCGAN, orchestrated by Prefect.

Imported before Prefect by flows/ and tasks/: a local server or client sends no telemetry
(Prefect's default does) unless the user's environment turns it back on, and the ephemeral
server Prefect starts for a flow run without PREFECT_API_URL gets 3 minutes, not 20 s, to
come up: its first start migrates a new SQLite database, which a loaded 2-core machine
measured taking longer than 20 s.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
