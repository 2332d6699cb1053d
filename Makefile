# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: venv demo lint test test-pip test-ros ros-env ros-build ros-demo ros-bench bench clean models

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
	$(BIN)/ruff check goodpoint_ros training test launch tools setup.py

# `make test` = the pip tier (torch, rclpy test double) + the real-ROS 2 tier.
test: test-pip test-ros

# test_dds_* need real DDS: only the ROS tier collects them.
test-pip: $(STAMP) lint
	$(BIN)/python -m pytest test -q --durations=15 --ignore-glob='test/ros/test_dds_*' $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/goodpoint bench --backends torch --precision fp32,bf16 --json $(OUT)/bench.json

# Regenerate the shipped ONNX files after new weights land (docs/deployment.md).
models: $(STAMP)
	$(BIN)/goodpoint export onnx --into-package
	$(BIN)/goodpoint export int8 --into-package

# ---------------------------------------------------------------- real ROS 2 tier
# ROS 2 Jazzy from PyPI wheels (requirements-ros.txt) in a second, torch-free
# environment; the package is colcon-built from a copy of the checkout into
# $(ROS_WS) (a copy because CMake refuses exported include paths inside the source
# tree, and .venv-ros lies in it).  Every variable is explained in docs/ros.md.
VENV_ROS ?= .venv-ros
ROS_BIN := $(VENV_ROS)/bin
ROS_STAMP := $(VENV_ROS)/.installed
ROS_WS ?= build/ros
ROS_BUILT := $(ROS_WS)/.built
ROS_SOURCES := CMakeLists.txt package.xml cmake/ros_wheels_fixup.cmake \
	$(shell find goodpoint_ros msg launch config -type f ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null)
export VENV_ROS ROS_WS

# No rule may fail just because the registry is unreachable: ros-env leaves no
# stamp then, and test-ros skips the tier with one loud line (tools/ros/tier.sh).
$(ROS_STAMP): requirements-ros.txt
	test -x $(ROS_BIN)/python || $(PY) -m venv $(VENV_ROS)
	$(ROS_BIN)/python -m pip install -q --upgrade pip
	$(ROS_BIN)/python -m pip install -q -r requirements-ros.txt
	touch $(ROS_STAMP)

ros-env: $(ROS_STAMP)

# Rebuilt when any installed file changes (the tier tests the installed copy).
$(ROS_BUILT): $(ROS_STAMP) $(ROS_SOURCES)
	bash tools/ros/build.sh

ros-build: $(ROS_BUILT)

test-ros:
	bash tools/ros/tier.sh $(PYTEST_ARGS)

# The real node on the bundled images, no ROS install needed (README).
ros-demo: $(ROS_BUILT)
	bash tools/ros/run.sh python tools/ros/demo.py

# Latency over DDS vs the pipeline's own time (docs/ros.md).
ros-bench: $(ROS_BUILT)
	bash tools/ros/run.sh python tools/ros/latency.py --json $(OUT)/ros_latency.json

clean:
	rm -rf $(VENV) $(VENV_ROS) $(OUT) build *.egg-info
