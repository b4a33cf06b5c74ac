# Two commands: `make run` serves the app with the shipped model, `make test` runs the tests.
# Both create the virtual environment (.venv) and install styler into it when needed; `make test`
# also installs Debian's chromium for the browser tests when it is missing (apt-get as root,
# sudo otherwise).
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
CHROMIUM ?= /usr/bin/chromium
HOST     ?= 127.0.0.1
PORT     ?= 8000

.PHONY: run test install browser lint bench eval-quick clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@left=$$($(PY) -m pip list --format=freeze \
	  | grep -oiE '^(torchvision|triton|nvidia-[a-z0-9_-]+)=' | tr -d '='); \
	  test -z "$$left" || { \
	  echo "removing what a CUDA build of torch left in $(VENV): $$left"; \
	  $(PY) -m pip uninstall --quiet --yes $$left; }
	@touch $@

install: $(VENV)/.installed

browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: install
	$(VENV)/bin/styler serve --host $(HOST) --port $(PORT)

test: install browser
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check styler tests && $(VENV)/bin/ruff format --check styler tests

bench: install
	$(VENV)/bin/styler bench

eval-quick: install
	@test -n "$(DATA)" || { echo "usage: make eval-quick DATA=folder-with-content-and-style"; exit 2; }
	$(VENV)/bin/styler eval --quick --data "$(DATA)"

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
