"""Keep TensorFlow's native start-up chatter off a user's terminal; real errors still pass.

TensorFlow's C++ code writes to file descriptor 2 directly, and TF_CPP_MIN_LOG_LEVEL no
longer silences all of it (absl's pre-init warning, cuInit on GPU-less machines, grappler's
harmless "remapper failed"), so Python's logging cannot filter it. `quiet_native_logs`
points fd 2 at a pipe whose reader drops those known lines and forwards every other one;
Python's own sys.stderr keeps the real stream, so tracebacks never wait on the pipe.
"""

from __future__ import annotations

import atexit
import os
import re
import select
import sys
import threading

# Each a line TensorFlow prints on a normal CPU or GPU run that asks nothing of the user.
NOISE = re.compile(
    rb"All log messages before absl::InitializeLog|failed call to cuInit|Could not find cuda drivers"
    rb"|oneDNN custom operations are on|remapper failed|This TensorFlow binary is optimized"
    rb"|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|TF-TRT Warning"
    rb"|To enable the following instructions|cuda_executor.cc.*NUMA node|Skipping the delay kernel"
)


def quiet_native_logs() -> None:
    """Filter fd 2 for the rest of the process (idempotent; restored at exit)."""
    if getattr(quiet_native_logs, "installed", False):
        return
    quiet_native_logs.installed = True  # type: ignore[attr-defined]
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(os.dup(real), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")

    stopping = threading.Event()

    def forward() -> None:
        pending = b""
        with open(real, "wb", buffering=0) as out:
            while True:
                if select.select([read_end], [], [], 0.1)[0]:
                    chunk = os.read(read_end, 65536)
                    if not chunk:
                        break
                    *lines, pending = (pending + chunk).split(b"\n")
                    out.write(b"".join(line + b"\n" for line in lines if not NOISE.search(line)))
                elif stopping.is_set():  # drained; child processes may still hold the pipe open
                    break
            if pending and not NOISE.search(pending):
                out.write(pending)

    pump = threading.Thread(target=forward, name="native-log-filter", daemon=True)
    pump.start()

    def restore() -> None:
        os.dup2(sys.stderr.fileno(), 2)
        stopping.set()
        pump.join(timeout=2)

    atexit.register(restore)
