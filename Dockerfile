# One container that is the whole product: the app (and, from the jobs issue on, its local worker).
#   docker build -t auto-annotator .
#   docker run --gpus all -p 7860:7860 -v "$PWD/data:/app/data" auto-annotator
#   docker logs <container>   # the first start prints the password of the user "admin" it created
# PyPI's Linux torch wheels are CUDA builds: with --gpus all (NVIDIA Container Toolkit) they use the GPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ANNOTATOR_DATA_DIR=/app/data \
    ANNOTATOR_HOST=0.0.0.0 \
    ANNOTATOR_PORT=7860 \
    ANNOTATOR_FIRST_ADMIN=1
# ANNOTATOR_FIRST_ADMIN: it listens on every interface, so it never runs without login. On the first start
# with no user configured it creates "admin" with a random password in /app/data/users.txt (only the hash)
# and prints the password once in the log.

# OpenCV (pulled in by ultralytics) needs libGL and glib; DejaVu stands in for ultralytics' Arial.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY app.py pyproject.toml README.md ./
COPY annotator ./annotator
COPY jobs ./jobs
# The package itself (the `annotator` command); its dependencies are already installed above.
RUN pip install --no-deps .

RUN useradd --create-home --uid 1000 annotator \
 && mkdir -p /app/data \
 && chown -R annotator:annotator /app/data
USER annotator
VOLUME ["/app/data"]
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('ANNOTATOR_PORT','7860'), timeout=4)" || exit 1

CMD ["python", "app.py"]
