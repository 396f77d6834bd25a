"""One ingest flow run in its own process, for the crash tests (not a test module):

    python -m tests.reliability.ingest_child SETTINGS_JSON SOURCE...

With INGEST_CHILD_GO_FILE set, it waits for that file to exist before starting the run.
Prints one JSON line: the final state's type, message and flow run id; exit 0 if Completed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from flows.ingest import ingest
from synthwave.settings import IngestSettings


def main(argv: list[str]) -> int:
    settings = IngestSettings.model_validate_json(argv[0])
    go = os.environ.get("INGEST_CHILD_GO_FILE")  # imports done: start the moment the test says so
    while go and not Path(go).exists():
        time.sleep(0.02)
    state = ingest(argv[1:], settings, return_state=True)
    print(json.dumps({"state": state.type.value, "message": state.message,
                      "flow_run_id": str(state.state_details.flow_run_id)}))
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
