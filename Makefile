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

.PHONY: install run test test-reliability test-scaleout lint bench clean

install: $(STAMP)

# torch first, from its CPU build, or pip pulls a multi-GB CUDA build for ctgan.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/heartrisk up

test: install
	$(VENV)/bin/pytest -m "not reliability and not scaleout"

test-reliability: install
	$(VENV)/bin/pytest -m reliability

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
