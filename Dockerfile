# probexit on a GPU: the official vLLM 0.32.0 image (CUDA, PyTorch and vLLM built together), plus probexit.
#   docker build -t probexit .
#   docker run --gpus all -p 8000:8000 -e PROBEXIT_API_KEY=... probexit \
#       --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B --probe /probes/r1-1.5b
FROM vllm/vllm-openai:v0.32.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_WAIT_POLICY=PASSIVE \
    HF_HOME=/home/probexit/.cache/huggingface

WORKDIR /opt/probexit
COPY pyproject.toml README.md ./
COPY cli/ cli/
COPY server/ server/
COPY engine/ engine/
COPY kernels/ kernels/
COPY probes/ probes/
COPY rewards/ rewards/
COPY training/ training/
COPY benchmarks/ benchmarks/
COPY assets/ assets/
# The gpu extra pins vllm==0.32.0, which the base image already holds, so pip keeps its CUDA build.
# Every direct dependency is pinned in pyproject.toml, which DL3013 cannot see through `.[gpu]`.
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir ".[gpu]" \
    && useradd --create-home --uid 10001 probexit

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# Bind every interface inside the container; set PROBEXIT_API_KEY (or --api-key) when the port is exposed.
ENTRYPOINT ["probexit", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []
