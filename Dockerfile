# syntax=docker/dockerfile:1
# Build stage: install the package and its dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Every third-party file is checked against the hashes in the locks (`make lock` writes them for this Python) and
# nothing is resolved here: --no-deps, so a package the lock lacks fails `pip check` instead of being fetched unhashed.
COPY requirements.lock requirements-build.lock ./
# The build backend goes into this stage's own Python (discarded with the stage), by hash as well: the project is
# then built without build isolation, which would fetch setuptools unhashed.
RUN python -m pip install --require-hashes --no-deps -r requirements-build.lock
RUN python -m venv /opt/venv && \
    /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY license_server ./license_server
# The project itself, built from this source; its dependencies are all in the venv already.
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . && \
    /opt/venv/bin/pip install --no-deps /wheels/*.whl && \
    /opt/venv/bin/pip check

# Runtime stage: the virtualenv only, run as an unprivileged user.
FROM python:3.11-slim
RUN groupadd --system --gid 10001 license && \
    useradd --system --uid 10001 --gid license --home-dir /nonexistent --shell /usr/sbin/nologin license && \
    mkdir -p /data /keys && chown license:license /data /keys && chmod 0700 /data /keys
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LICENSE_SERVER_DATA_DIR=/data \
    LICENSE_SERVER_KEYS_DIR=/keys \
    LICENSE_SERVER_HOST=0.0.0.0 \
    LICENSE_SERVER_PORT=8000
USER license
VOLUME ["/data", "/keys"]
EXPOSE 8000
# The health check asks the port the server listens on (LICENSE_SERVER_PORT, as `docker run -e` may change it).
# Keys come from the offline key host: `docker run --entrypoint license-server IMAGE keys import BUNDLE`, then
# `... IMAGE init` once (README, docs/keys.md); serve refuses to start without them. The root key is never here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('LICENSE_SERVER_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/health/ready', timeout=4).status != 200)"]
ENTRYPOINT ["license-server", "serve"]
