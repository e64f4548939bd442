# newswatch: one image, `newswatch run` by default. Configure with environment variables and
# a YAML file (NEWSWATCH_CONFIG); SQLite lives in the /data volume unless DATABASE_URL says
# otherwise.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Pure Python with binary wheels (numpy, scipy): no compiler. The build stage keeps pip and
# the build tools out of the image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN python -m venv /opt/newswatch \
 && /opt/newswatch/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/newswatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/newswatch.db \
    NEWSWATCH_CONFIG=/config/newswatch.yaml \
    NEWSWATCH_LOG_FORMAT=json \
    NEWSWATCH_HTTP_HOST=0.0.0.0 \
    NEWSWATCH_HTTP_PORT=8080
COPY --from=build /opt/newswatch /opt/newswatch
COPY deploy/newswatch.example.yaml /config/newswatch.yaml
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin newswatch \
 && mkdir -p /data \
 && chown 10001 /data
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('NEWSWATCH_HTTP_PORT', '8080'), timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["newswatch", "run"]
