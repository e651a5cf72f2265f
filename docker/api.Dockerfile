# syntax=docker/dockerfile:1
# The generation service: `sobesednik serve` on a model dir mounted at /models.
#
#   docker build -f docker/api.Dockerfile -t sobesednik-api .
#   docker run -p 127.0.0.1:8000:8000 -v $PWD/models/my-chat:/models/current:ro sobesednik-api
#
# CPU torch by default. For NVIDIA GPUs build with the CUDA wheels (the container needs the NVIDIA runtime):
#   docker build -f docker/api.Dockerfile --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject alone, so that a source change does not reinstall torch.
RUN pip install "${TORCH_SPEC}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
RUN mkdir -p src/sobesednik && echo '__version__ = "0"' > src/sobesednik/__init__.py \
    && pip install ".[serve]" && pip uninstall -y sobesednik
COPY src ./src
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
# gcc builds the decoding kernels (int8 linears, attention) for the CPU the container runs on, at its first start
# (into the user's ~/.cache/sobesednik); without it decoding steps fall back to torch's slower kernels.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 sobesednik
COPY --from=builder /opt/venv /opt/venv
# The model comes from the volume, never from the network.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    SOBESEDNIK_API_MODEL=/models/current \
    SOBESEDNIK_API_HOST=0.0.0.0 \
    SOBESEDNIK_API_PORT=8000
USER sobesednik
WORKDIR /home/sobesednik
VOLUME ["/models"]
EXPOSE 8000
# /readyz answers 200 only once the model is loaded and has generated a token.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
ENTRYPOINT ["sobesednik", "serve"]
