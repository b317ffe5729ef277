# The two commands of the README's Quick start: `make run` and `make test`.
# Installs into .venv only when requirements change (a stamp file per requirements set).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check --progress-bar off -q

.PHONY: run test test-fast bench install install-dev clean-venv

run: $(VENV)/.installed
	$(PY) app.py $(ARGS)

# pytest exits 5 when it collects no tests: that is not a failure of the suite.
test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

# The unmarked tests only (no worker processes, real models, app launches, Chromium or Redis): a minute.
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not slow and not browser and not redis" $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev  # playwright drives Chromium in editor_browser.py
	$(PY) bench/ingest.py
	$(PY) bench/store.py
	$(PY) bench/auto_annotate.py
	$(PY) bench/scale.py
	$(PY) bench/editor.py
	$(PY) bench/editor_browser.py
	$(PY) bench/export.py
	$(PY) bench/train.py
	$(PY) bench/video.py
	$(PY) bench/dedupe.py

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(PY):
	$(PYTHON) -m venv $(VENV)

# The app itself goes in editable (the `annotator` command; code changes need no reinstall).
$(VENV)/.installed: requirements.txt pyproject.toml | $(PY)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	@touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) -r requirements-dev.txt
	@touch $@

clean-venv:
	rm -rf $(VENV)
