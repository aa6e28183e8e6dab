# Two commands do all the set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# On the project's own machines the dev copy of the data sits next to the repo; elsewhere the
# product downloads the real file from Kaggle (or set HEARTRISK_CSV yourself).
DEV_CSV := $(abspath ../shared/data/heart_2020_dev.csv.gz)
ifeq ($(origin HEARTRISK_CSV), undefined)
  ifneq ($(wildcard $(DEV_CSV)),)
    export HEARTRISK_CSV := $(DEV_CSV)
  endif
endif
# torch and LightGBM/scikit-learn each bring an OpenMP runtime; on 2 cores busy-waiting threads
# slow each other tenfold (DESIGN.md, pitfalls).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install run test test-reliability test-scaleout docs-images lint bench clean

install: $(STAMP)

# torch first, from its CPU build, or pip pulls a multi-GB CUDA build for ctgan.
# axe-core (npm, pinned in tests/web/axe/package-lock.json) for the accessibility test of the pages.
$(STAMP): pyproject.toml constraints.txt tests/web/axe/package-lock.json
	test -x $(PY) || python3 -m venv $(VENV)
	npm ci --prefix tests/web/axe --no-audit --no-fund --silent
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/heartrisk up

# The browser tests drive whichever Chromium scripts/find-browser finds or installs (it says which);
# they get its path in HEARTRISK_BROWSER.
FIND_BROWSER = browser="$$(PY=$(PY) scripts/find-browser)" || exit 1; export HEARTRISK_BROWSER="$$browser";

test: install
	@$(FIND_BROWSER) $(VENV)/bin/pytest -m "not reliability and not scaleout"

test-reliability: install
	@$(FIND_BROWSER) $(VENV)/bin/pytest -m reliability

# The README's screenshots: the browser tests that take them write them to docs/img (`make test`
# keeps its screenshots in temporary folders and never rewrites tracked files).
docs-images: install
	@$(FIND_BROWSER) HEARTRISK_DOCS_IMAGES=$(CURDIR)/docs/img $(VENV)/bin/pytest -m browser \
		tests/web/test_form_browser.py tests/web/test_dashboard.py tests/web/test_result_browser.py

# Several machines on a real local S3 (moto), an mlflow server and redis-server (apt-get install
# redis-server): docs/running.md.
test-scaleout: install
	$(VENV)/bin/pytest -m scaleout

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/pip-audit --strict --progress-spinner off --no-deps --disable-pip -r constraints.txt $(AUDIT_IGNORE)

# Known vulnerabilities explained in docs/reliability.md, one `--ignore-vuln ID` each; anything else
# fails `make lint`, and so does a dependency the audit could not look up (--strict).
AUDIT_IGNORE :=

bench: install
	for script in bench/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
