"""ai-synthwave: videos -> sharded TFRecords -> DCGAN, orchestrated by Prefect.

Imported before Prefect by flows/ and tasks/: a local server or client sends no telemetry
(Prefect's default does) unless the user's environment turns it back on.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
