# Two commands: `make run` serves the app with the shipped model, `make test` runs the tests.
# Both create the virtual environment (.venv) and install styler into it when needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test install bench eval-quick clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/styler serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/styler bench

eval-quick: install
	@test -n "$(DATA)" || { echo "usage: make eval-quick DATA=folder-with-content-and-style"; exit 2; }
	$(VENV)/bin/styler eval --quick --data "$(DATA)"

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
