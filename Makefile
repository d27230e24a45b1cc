# Convenience targets; each is one documented command.
PY := .venv/bin/python

.PHONY: setup test study study-smoke lint bench

setup:
	bash setup.sh

test:
	$(PY) -m pytest

study:
	.venv/bin/pqstudy study --profile default

study-smoke:
	.venv/bin/pqstudy study --profile smoke

lint:
	.venv/bin/ruff check pqstudy tests benchmarks

bench:
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/nearest_code.py
	$(PY) benchmarks/search_kernel.py
