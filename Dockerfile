# One image for every Ironstar service: `docker run ironstar writer|projector|gateway`.
# Settings are IRONSTAR_* variables (`ironstar config` lists them); compose.yaml sets them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY writer ./writer
COPY projector ./projector
COPY gateway ./gateway
COPY ironstar ./ironstar
COPY examples ./examples
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data ironstar \
    && mkdir -p /data \
    && chown ironstar /data

USER ironstar
WORKDIR /data
EXPOSE 8000 9100
ENTRYPOINT ["ironstar"]
CMD ["gateway"]
