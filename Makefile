# Developer shortcuts. The README's two commands are ./setup.sh and ./run_tests.sh.
PY ?= .venv/bin/python

.PHONY: setup test test-all lint typecheck zip bench clean

setup:
	./setup.sh

test:
	./run_tests.sh

test-all:
	./run_tests.sh -m ""

lint:
	$(PY) -m ruff check core models plugin training tests bench tools

typecheck:
	$(PY) -m mypy

zip:
	$(PY) tools/build_plugin_zip.py --out build/sarcoreg.zip

clean:
	rm -rf build .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -exec rm -rf {} +
