# GPU image for the train and pipeline deployments (gpu-pool). Build from the repo root:
#   docker build -f docker/train.Dockerfile -t ai-synthwave-train:0.1.0 .
# The tag is the TensorFlow version pinned in pyproject.toml (tests/test_docker.py checks
# it): the official image brings the CUDA and cuDNN that this TF build was made against.
# No ENTRYPOINT/CMD: Prefect's docker and kubernetes workers set each run's command
# (`prefect flow-run execute`, the console script the prefect dependency installs).
FROM tensorflow/tensorflow:2.21.0-gpu

# PIP_BREAK_SYSTEM_PACKAGES: newer Ubuntu bases mark the system Python as externally
# managed; in this image it is the only environment, and TF already lives in it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# The uid that owns bind-mounted data/ and runs/ on the host: --build-arg UID="$(id -u)".
# --non-unique: Ubuntu 24.04 bases already have uid 1000 (ubuntu).
ARG UID=1000
RUN useradd --create-home --non-unique --uid "${UID}" synthwave

WORKDIR /opt/ai-synthwave

# Dependencies from pyproject.toml alone, in their own layer; same command as
# docker/ingest.Dockerfile, plus a constraint that keeps the image's own TensorFlow (built
# for its CUDA) instead of letting pip swap in another wheel.
COPY pyproject.toml README.md ./
RUN python3 -c "import importlib.metadata as m; print('tensorflow==' + m.version('tensorflow'))" > /tmp/constraints.txt \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && python3 -m pip install --no-cache-dir --constraint /tmp/constraints.txt --requirement /tmp/requirements.txt \
 && rm /tmp/constraints.txt /tmp/requirements.txt

# The code: installed and kept here, where the pull step (set_working_directory
# /opt/ai-synthwave) makes entrypoints like flows/train.py resolve.
COPY . .
RUN python3 -m pip install --no-cache-dir --no-deps . \
 && mkdir -p data runs \
 && chown "${UID}" data runs

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER ${UID}
