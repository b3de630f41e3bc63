# One image for every process of the deployment: worker, beat, flower and the emulator.
# The entry point is the `stt-workers` CLI; docker-compose.yml picks the subcommand.
# No key or password is baked in: all configuration comes from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Dependencies first, from pyproject.toml alone with empty packages: this layer is rebuilt
# only when the dependencies change, not on every code change.
COPY pyproject.toml README.md ./
RUN mkdir -p tasks workers \
    && touch tasks/__init__.py workers/__init__.py \
    && pip install '.[postgres]' \
    && pip uninstall -y aiml-stt-workers \
    && rm -rf tasks workers build *.egg-info

# Then the code itself (no dependency resolution: they are all installed above).
COPY tasks ./tasks
COPY workers ./workers
RUN pip install --no-deps . && rm -rf build *.egg-info

# An unprivileged user; /data is where beat's schedule and Flower's state live (volumes).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin stt \
    && mkdir -p /data && chown stt:stt /data
USER stt
WORKDIR /home/stt

ENTRYPOINT ["stt-workers"]
CMD ["worker"]
