# tfgate's production image: the gateway and its runtime dependencies, no TensorFlow.
# TF Serving runs in its own container (docker-compose.yml).

# Build stage: a wheel from the hand-written code (server/tfgate/) and the generated stubs (gen/).
# The local model server (server/tfgate_model_server/) is not copied: it is TensorFlow's side.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --disable-pip-version-check build
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY server/tfgate/ server/tfgate/
COPY gen/ gen/
RUN python -m build --wheel --outdir /dist

# Runtime stage: the wheel and what requirements/runtime.txt asks for, nothing else.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tfgate
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir --disable-pip-version-check /tmp/dist/*.whl \
    && rm -rf /tmp/dist
USER tfgate
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["tfgate", "healthcheck", "--target", "127.0.0.1:8080"]
ENTRYPOINT ["tfgate"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--http-listen", "0.0.0.0:8081", "--backend", "tensorflow-serving:8500"]
