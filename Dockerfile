# One image for every memeguard node. LOCK and EXTRAS pick what is installed:
#   LOCK=cpu EXTRAS=cpu,s3      -> API, producer and CPU workers (no torch; s3: boto3 for an s3:// blob store)
#   LOCK=gpu EXTRAS=cpu,vlm,s3  -> GPU workers (torch + transformers)
# Python 3.11: the release every dependency here ships wheels for, the GPU machines' torch builds included,
# and the one CI tests on (pyproject's requires-python); the base image is pinned to its patch release and
# Debian suite, and the packages come from requirements/<LOCK>.lock (tools/lock.py), not a fresh resolve.
FROM python:3.11.13-slim-bookworm
ARG LOCK=cpu
ARG EXTRAS=cpu,s3
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements/${LOCK}.lock ./requirements.lock
RUN pip install --no-cache-dir --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY memeguard ./memeguard
COPY policies ./policies
COPY jobs ./jobs
COPY review ./review
COPY banks ./banks
COPY lexicon ./lexicon
COPY radar ./radar
COPY releases ./releases
COPY producer ./producer
COPY console ./console
COPY worker ./worker
COPY composition ./composition
COPY migrations ./migrations
# the project itself: its dependencies are already installed at the locked versions
RUN pip install --no-cache-dir --no-deps ".[${EXTRAS}]" && pip check
RUN useradd --system --uid 10001 memeguard && mkdir -p /data/blobs && chown -R memeguard /data
USER memeguard
ENV MEMEGUARD_DATA_DIR=/data MEMEGUARD_BLOB_STORE=/data/blobs PYTHONUNBUFFERED=1
EXPOSE 8000 9108
CMD ["memeguard", "--help"]
