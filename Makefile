# The two commands of the README. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "gradxform needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# setuptools warns on every editable install of a package at the top of its repository that
# other top-level folders could shadow it on import; ours are benchmarks/, configs/, docs/,
# notebooks/ and tests/, none named gradxform, so the warning is left out of the output.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e ".[$*]"
	@touch $@

demo: $(VENV)/.installed-demo
	$(PY) -m gradxform train --config configs/default.yaml --fresh

test: $(VENV)/.installed-test
	$(PY) -m pytest -n 2 tests gradxform

bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
