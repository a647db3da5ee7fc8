# The crawler image: the same package for the frontier, the workers and one-shot commands.
FROM python:3.11-slim-bookworm

# Chromium from Debian for pages that need JavaScript (Playwright drives the system browser).
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The locked dependencies first (their own layer, rebuilt only when the lock changes), then the package.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY crawler ./crawler
COPY frontier ./frontier
COPY configs ./configs
RUN pip install --no-cache-dir --no-deps .

# `--metrics-port 9100` serves Prometheus metrics here (docker-compose.yml does, for its prometheus service).
EXPOSE 9100
# Workers write pages-<id>.jsonl here; mount a volume to keep them.
VOLUME ["/data"]
WORKDIR /data
ENTRYPOINT ["crawler"]
CMD ["--help"]
