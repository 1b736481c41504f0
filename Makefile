# Anshim — two commands on a fresh Debian machine:
#   make demo   set up what is needed and run the main job
#   make test   set up what is needed and run the whole suite
#
# Set-up is idempotent: each step leaves a stamp and re-runs only when its inputs change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.anshim-installed

.PHONY: setup demo test lint typecheck pytest mosquitto clean bench

setup: $(STAMP) typings/.installed node_modules/.package-lock.json mosquitto

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

# MicroPython ESP32 stubs in their own folder (they replace CPython's stdlib stubs) for the
# firmware type check: `mypy --config-file firmware/mypy.ini`.
typings/.installed: pyproject.toml | $(STAMP)
	$(PY) -m pip install --quiet --no-user --upgrade --target typings micropython-esp32-stubs==1.29.0.post1
	@touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# mosquitto is the real MQTT broker the integration tests start on loopback;
# mosquitto_sub (mosquitto-clients) shows the demo's event stream.
mosquitto:
	@if (command -v mosquitto || test -x /usr/sbin/mosquitto) >/dev/null 2>&1 \
		&& command -v mosquitto_sub >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing mosquitto and mosquitto-clients (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			mosquitto mosquitto-clients >/dev/null; \
		systemctl disable --now mosquitto >/dev/null 2>&1 || true; \
	else \
		echo "mosquitto is missing; install it with:  sudo apt-get install -y mosquitto mosquitto-clients"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check protocol tools gateway tests firmware

typecheck: $(STAMP) typings/.installed
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --config-file firmware/mypy.ini

pytest: setup
	$(VENV)/bin/pytest -q

test: setup lint typecheck pytest

demo: setup
	$(VENV)/bin/anshim demo

bench: setup
	$(VENV)/bin/anshim bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache build *.egg-info
