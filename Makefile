# Convenience targets; each is one documented command.
PY := .venv/bin/python

.PHONY: setup test study study-smoke lint bench gpu-check

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

# The GPU path: paper-profile throughput and peak memory per quantiser kind (bf16), CUDA-vs-CPU agreement of a tiny
# run; writes results/benchmarks/gpu.csv. Without a GPU it says so and exits 0.
gpu-check:
	PYTHONPATH=$(CURDIR) $(PY) benchmarks/gpu_check.py
