# Every dev command has one entry point here; .ci/run calls `make test` and `make lint`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TFS_PIN := requirements/tfserving.txt

.PHONY: all venv gen protos check-gen lint test run bench models compose-secrets clean

all: test

# The venv carries the gateway, the dev tools and the [local] extra (TensorFlow + the official
# TF Serving API), which the local model server (server/tfgate_model_server, importable through
# the editable install, never in the wheel) and the wire-compatibility tests need.
# tfgate's own sources are compiled to bytecode, as a wheel install does, so that no start pays
# for it where Python runs with PYTHONDONTWRITEBYTECODE.
$(STAMP): pyproject.toml requirements/runtime.txt requirements/dev.txt $(TFS_PIN)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,local]'
	$(PY) -m compileall -q server gen
	touch $(STAMP)

venv: $(STAMP)

# Regenerates protos/tensorflow*/, protos/xla/ and protos/google/api/ from the descriptors inside
# the pinned wheels.
protos: $(STAMP)
	$(PY) scripts/protos_from_wheels.py --out protos

# Regenerates gen/ (Python, gRPC and .pyi stubs) from protos/.
gen: $(STAMP)
	$(PY) scripts/gen.py

# Fails when gen/ is not what `make gen` would write.
check-gen: $(STAMP)
	$(PY) scripts/gen.py --check

lint: $(STAMP)
	$(VENV)/bin/ruff check server tests scripts
	$(VENV)/bin/ruff format --check server tests scripts
	$(VENV)/bin/mypy -p tfgate -p tfgate.v1 -p tfgate.tfs -p tfgate_model_server
	$(VENV)/bin/mypy tests scripts
	$(PY) scripts/buf.py lint

test: $(STAMP)
	$(PY) scripts/gen.py --check
	$(VENV)/bin/pytest -q

run: $(STAMP)
	$(PY) scripts/run_local.py

models: $(STAMP)
	$(PY) scripts/export_models.py --out models

bench: $(STAMP)
	$(PY) -m bench.run

# deploy/secrets/ for docker-compose.secure.yml: a CA, tfgate's certificate, an API key and
# its key file, the config with [auth] on (docs/deployment.md). Needs only bash and openssl.
compose-secrets:
	scripts/compose_secrets.sh

clean:
	rm -rf $(VENV) build *.egg-info
