# The Moon-Trek registration server.
#   docker build -t moontrek-python-server .
#   docker run -d --name moontrek-python-server -p 5000:80 \
#       -v "$(pwd)/config:/app/config" moontrek-python-server
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2

WORKDIR /app

# Dependencies first, so code changes do not reinstall OpenCV. Every
# dependency ships manylinux wheels (headless OpenCV needs no X or GL
# libraries), so no compiler enters the image.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY pyproject.toml setup.cfg README.md wsgi.py ./
COPY moontrek ./moontrek
# The server reads config/config.py from its working directory, /app. The
# image carries the Docker defaults there; a folder mounted at /app/config
# replaces them (and without a config.py in it, the built-in defaults apply).
COPY config/config.py.docker ./config/config.py
RUN pip install --no-deps . \
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
