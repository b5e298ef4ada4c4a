# upload-service image: front-end assets from npm, the wheel and its locked dependencies, a slim runtime.
#   docker build -t upload-service .
#   docker run --env-file .env -p 8000:8000 -v ./uploads:/uploads upload-service
# Every build step is a repo script that CI runs too (scripts/build-assets, scripts/install-wheel).

# 1. Front-end assets (htmx) from the npm registry, pinned by package-lock.json.
FROM node:22-bookworm-slim AS assets
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN if [ -x scripts/build-assets ]; then scripts/build-assets --omit=dev; fi \
 && rm -rf node_modules

# 2. The wheel, installed with the locked dependencies into /opt/venv.
FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY --from=assets /src /src
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN scripts/install-wheel /opt/venv /tmp/dist

# 3. Runtime: the venv only, a non-root user, uploads on a volume.
FROM python:3.11-slim-bookworm
# libmagic1: content types are sniffed with libmagic (ALLOWED_CONTENT_TYPES / DENIED_CONTENT_TYPES)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/app app \
 && mkdir /uploads \
 && chown app:app /uploads
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    UPLOAD_DIR=/uploads \
    HOST=0.0.0.0 \
    PORT=8000
VOLUME ["/uploads"]
EXPOSE 8000
USER 10001:10001
WORKDIR /home/app
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["upload-service"]
