# Developer shortcuts. The README's two commands are ./setup.sh and ./run_tests.sh.
PY ?= .venv/bin/python

.PHONY: setup test test-all lint typecheck zip models bench clean

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

# One model pack per model card (card + weight files + SHA-256 manifest), for `sarcoreg models install`.
models:
	$(PY) -m sarcoreg.core.cli models pack --out dist/models

clean:
	rm -rf build dist/models .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -exec rm -rf {} +
