# styler's web page and REST API on port 8000, on the CPU.
#   docker build -t styler .
#   docker run -p 8000:8000 -v styler-data:/data styler
# Settings are environment variables (STYLER_MAX_SIZE, STYLER_JOB_WORKERS …: styler/settings.py).
# Accepted jobs and their inputs live in /data: a restarted container finishes them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STYLER_DATA_DIR=/data

# PyTorch's CPU-only wheels (the PyPI ones bring CUDA libraries, gigabytes this image does not use).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY . .
# A regular install: the web page, the shipped model and the split are package data.
RUN pip install --extra-index-url "$TORCH_INDEX" -c constraints.txt . \
    && useradd --create-home --uid 10001 styler \
    && mkdir -p /data && chown styler /data

USER styler
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["styler", "serve", "--host", "0.0.0.0", "--port", "8000"]
