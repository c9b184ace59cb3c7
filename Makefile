# The README's two commands: `make demo` and `make test`. Both work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench system-deps docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv

# One stamp per extra; reinstall when pyproject.toml changes. uv installs in seconds what pip takes 1.5 min for
# (measured here); pip stays the way in if uv cannot.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	VIRTUAL_ENV="$(abspath $(VENV))" $(VENV)/bin/uv pip install -q -e ".[$*]" || $(PY) -m pip install -q -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-demo
	$(PY) -m otel_llm_metrics.demo

system-deps:
	bash scripts/install-system-deps.sh

# The whole suite on the newest Python present (three pytest processes), the unit suite on every other claimed one
# (two; noxfile.py). The unit sessions run beside the whole suite at the lowest priority: its integration tests
# mostly wait, and the unit tests take what they leave. Their output follows the suite's.
# Where no other claimed Python is present there is no unit session, and none is started.
test: system-deps $(VENV)/.installed-test
	$(PY) -m ruff check .
	@unit=; units=0; \
	if $(PY) -m nox -l 2>/dev/null | grep -Eq '^\* unit(-|$$)'; then \
		nice -n 19 $(PY) -m nox -s unit > .nox-unit.log 2>&1 & unit=$$!; fi; \
	$(PY) -m nox -s full; full=$$?; \
	if [ -n "$$unit" ]; then wait $$unit; units=$$?; cat .nox-unit.log; fi; \
	echo "make test: whole suite exit $$full, unit sessions exit $$units"; \
	test $$full -eq 0 -a $$units -eq 0

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

bench: system-deps $(VENV)/.installed-bench
	$(PY) benchmarks/bench_asgi.py
	$(PY) benchmarks/bench_llm.py
	$(PY) benchmarks/bench_span_processor.py
	$(PY) benchmarks/bench_resources.py
	$(PY) benchmarks/bench_uvicorn.py
	$(PY) benchmarks/bench_workers.py
	$(PY) benchmarks/bench_client.py
	$(PY) benchmarks/bench_rag.py

docs: $(VENV)/.installed-test
	$(PY) -m otel_llm_metrics.docs --write

clean:
	rm -rf $(VENV) .nox .nox-unit.log build *.egg-info .pytest_cache .ruff_cache
