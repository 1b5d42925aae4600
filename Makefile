# The two commands of the README. Both run the (idempotent) set-up first.
.PHONY: setup serve test unit bench lint

setup:
	bash scripts/setup.sh

serve: setup
	.venv/bin/copyserve serve --config configs/local.yaml

test: setup
	.venv/bin/python -m pytest

unit:
	.venv/bin/python -m pytest tests/unit

bench:
	.venv/bin/python bench/latency.py

lint:
	.venv/bin/ruff check .
