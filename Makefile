# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: venv demo lint test bench clean models

$(STAMP): setup.py requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m goodpoint_ros.cli.demo --out $(OUT)

# pyflakes + import order + line length (ruff.toml); fix what it finds, don't silence it.
lint: $(STAMP)
	$(BIN)/ruff check goodpoint_ros training test launch setup.py

test: $(STAMP) lint
	$(BIN)/python -m pytest test -q --durations=15 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/goodpoint bench --backends torch --precision fp32,bf16 --json $(OUT)/bench.json

# Regenerate the shipped ONNX files after new weights land (docs/deployment.md).
models: $(STAMP)
	$(BIN)/goodpoint export onnx
	$(BIN)/goodpoint export int8

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
