# syntax=docker/dockerfile:1
# One image for every service: `SERVICE=<name>` (build arg or runtime env) picks what it runs.
#   docker build --build-arg SERVICE=api_gateway -t notifications/api-gateway .
# SERVICE is one of api_gateway, user_service, template_service, email_service, push_service,
# fcm_standin, smtp_inbox, migrate, migrate_and_seed (see deploy/docker/entrypoint.sh).

ARG PYTHON_VERSION=3.11

# --- builder: resolve the locked dependencies into /opt/venv, nothing else -------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
# --frozen: the image gets exactly what uv.lock says; --no-dev: no pytest, mypy or ruff.
RUN uv sync --frozen --no-dev --no-install-project

# --- runtime: the interpreter, the venv and our source, run by an unprivileged user -----------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG SERVICE=api_gateway
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIND_HOST=0.0.0.0 \
    SERVICE=${SERVICE}
WORKDIR /app
COPY shared/ shared/
COPY services/ services/
COPY scripts/ scripts/
COPY deploy/docker/entrypoint.sh deploy/docker/healthcheck.py deploy/docker/
RUN python -m compileall -q shared services scripts \
    && chmod 0755 deploy/docker/entrypoint.sh
USER 10001:10001
# api_gateway, user_service, template_service, email_service, push_service, fcm_standin
EXPOSE 8080 3001 3000 2525 8081 8085
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/docker/healthcheck.py"]
ENTRYPOINT ["/app/deploy/docker/entrypoint.sh"]
