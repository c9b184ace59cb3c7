"""The plain apps wrapped by hand with ``setup()``, for the lifespan and exit tests (any server)."""

import otel_llm_metrics
from tests.integration.plain_apps import bare_app, failing_start_up, starlette_app

failing_start_up_wrapped = otel_llm_metrics.setup().instrument(failing_start_up)
bare_wrapped = otel_llm_metrics.setup().instrument(bare_app)  # no lifespan support of its own
starlette_wrapped = starlette_app
otel_llm_metrics.setup(starlette_wrapped)
