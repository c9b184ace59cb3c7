# The instrumented demo app, as the local stack runs it (zero code: opentelemetry-instrument).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY otel_llm_metrics ./otel_llm_metrics
RUN pip install --no-cache-dir ".[demo]"
# WEB_CONCURRENCY is uvicorn's --workers: two workers, still one metrics target on 9464.
ENV OTEL_SERVICE_NAME=llm-demo \
    OTEL_EXPORTER_PROMETHEUS_HOST=0.0.0.0 \
    OTEL_EXPORTER_PROMETHEUS_PORT=9464 \
    WEB_CONCURRENCY=2
EXPOSE 8000 9464
CMD ["opentelemetry-instrument", "uvicorn", "otel_llm_metrics.demo.app:app", "--host", "0.0.0.0", "--port", "8000"]
