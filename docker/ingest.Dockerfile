# CPU image for the ingest deployment (cpu-pool). Build from the repo root:
#   docker build -f docker/ingest.Dockerfile -t ai-synthwave-ingest:0.1.0 .
# No ENTRYPOINT/CMD: Prefect's docker and kubernetes workers set each run's command
# (`prefect flow-run execute`, the console script the prefect dependency installs).
FROM python:3.11-slim

# No apt packages: opencv-python-headless bundles its own FFmpeg and image codecs and needs
# only libstdc++ and zlib from the system (both in slim); yt-dlp and deno are wheels, and
# downloads take video-only streams, so no ffmpeg binary either.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# The uid that owns bind-mounted data/ on the host: --build-arg UID="$(id -u)".
ARG UID=1000
RUN useradd --create-home --non-unique --uid "${UID}" synthwave

WORKDIR /opt/ai-synthwave

# Dependencies from pyproject.toml alone, in their own layer: a code change doesn't
# reinstall them. Same command as docker/train.Dockerfile, so both get the same pins.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && python -m pip install --no-cache-dir --requirement /tmp/requirements.txt \
 && rm /tmp/requirements.txt
# The dask extra too: a run from the UI may choose task_runner dask (pyproject's [dask] pins).
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['dask']))" > /tmp/dask.txt \
 && python -m pip install --no-cache-dir --requirement /tmp/dask.txt \
 && rm /tmp/dask.txt

# The code: installed (console script) and kept here, where the pull step
# (set_working_directory /opt/ai-synthwave) makes entrypoints like flows/ingest.py resolve.
COPY . .
RUN python -m pip install --no-cache-dir --no-deps . \
 && mkdir -p data runs \
 && chown "${UID}" data runs

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER ${UID}
