# The Moon-Trek registration server.
#   docker build -t moontrek-python-server .
#   docker run -d --name moontrek-python-server -p 5000:80 \
#       -v "$(pwd)/config:/app/config" moontrek-python-server
#
# Debian's slim image with Debian's python3: its filesystem can be rebuilt
# from Debian's packages with debootstrap, which is how
# scripts/rootfs-check.sh runs these steps without a Docker engine. That
# script reads this file: keep to the instructions it understands (FROM, ENV,
# WORKDIR, COPY, RUN, USER, EXPOSE, VOLUME, HEALTHCHECK, CMD; exec-form CMD).
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2

# Python 3.11 from Debian, and a virtual environment for everything from
# PyPI (Debian's python3 refuses pip installs into the system).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app

# Dependencies first, so code changes do not reinstall OpenCV. The lock pins
# every package (and the build backend) with hashes; all of them ship
# manylinux wheels for CPython 3.11 (headless OpenCV needs no X or GL
# libraries), so no compiler enters the image. scripts/lock.sh makes the lock.
COPY requirements.lock ./
RUN pip install --require-hashes --only-binary :all: -r requirements.lock

COPY pyproject.toml setup.cfg README.md wsgi.py ./
COPY moontrek ./moontrek
# The server reads config/config.py from its working directory, /app. The
# image carries the Docker defaults there; a folder mounted at /app/config
# replaces them (and without a config.py in it, the built-in defaults apply,
# on port 80 all the same: the CMD names the port).
COPY config/config.py.docker ./config/config.py
# The locked setuptools builds the package: nothing unpinned is fetched.
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build moontrek.egg-info \
    && useradd --system --home-dir /app --shell /usr/sbin/nologin moontrek \
    && mkdir -p /app/data /app/logs \
    && chown moontrek /app/data /app/logs

# Not root: Docker (20.10 and later) lets unprivileged processes in a
# container bind ports below 1024, so port 80 still works.
USER moontrek
EXPOSE 80
VOLUME ["/app/data"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:80/api/health', timeout=4).status != 200)"

CMD ["moontrek", "serve", "--host", "0.0.0.0", "--port", "80"]
