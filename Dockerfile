# One image for every memeguard node. EXTRAS picks what is installed:
#   cpu,s3      -> API, producer and CPU workers (no torch; s3: boto3 for an s3:// blob store)
#   cpu,vlm,s3  -> GPU workers (torch + transformers)
FROM python:3.11-slim
ARG EXTRAS=cpu,s3
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY memeguard ./memeguard
COPY worker ./worker
COPY producer ./producer
COPY policies ./policies
COPY migrations ./migrations
COPY console ./console
RUN pip install --no-cache-dir ".[${EXTRAS}]"
RUN useradd --system --uid 10001 memeguard && mkdir -p /data/blobs && chown -R memeguard /data
USER memeguard
ENV MEMEGUARD_DATA_DIR=/data MEMEGUARD_BLOB_STORE=/data/blobs PYTHONUNBUFFERED=1
EXPOSE 8000 9108
CMD ["memeguard", "--help"]
