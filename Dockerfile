# One image for every BannerService process: web (granian, webapp/serve.py), RQ worker, scheduler, one-shot jobs.
# The base is the official Python image; scripts/docker-standins.sh builds a Debian stand-in for
# machines without a registry (docker-compose.yml passes PYTHON_IMAGE through).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# PYTHONWARNINGS: rq-scheduler's cron helper calls the crontab package without its default_utc argument,
# which warns on each reschedule (jobs/schedule.py silences it where we register schedules too).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONWARNINGS="ignore:Version 0.22.0+ of crontab:FutureWarning" \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    INSTANCE_DIR=/data \
    IMAGE_DIR=/data/images \
    LOG_FILE=/data/logs/bannerservice.log \
    BIND=0.0.0.0:8000

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY config.py models.py dashboard_queries.py selection.py rotation.py visitor_state.py ./
COPY jobs ./jobs
COPY webapp ./webapp
COPY live ./live
COPY scripts/s3_upload.py ./scripts/
RUN pip install --no-deps . \
    && useradd --uid 10001 --create-home app \
    && mkdir -p /data \
    && chown app:app /data
# /data stays empty in the image: the engine copies an image's files into a new named volume from every
# container that mounts it, and several services starting at once then race on the same folders
# ("failed to mkdir …/_data/images: file exists"). The app makes its folders when it first writes them.

USER app
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["python", "-m", "webapp.serve"]
