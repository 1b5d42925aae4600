# The two commands of the README. Both run the (idempotent) set-up first.
.PHONY: setup serve test unit bench lint

setup:
	bash scripts/setup.sh

serve: setup
	.venv/bin/copyserve serve --config configs/local.yaml

# Unit tests first, on their own: a broken unit fails in seconds, before the engines start.
# Integration then runs the chaos tests (marked slow) last; --durations shows where the time went.
test: setup
	.venv/bin/python -m pytest tests/unit -q
	.venv/bin/python -m pytest tests/integration --durations=15

unit:
	.venv/bin/python -m pytest tests/unit

bench:
	.venv/bin/python bench/latency.py

lint:
	.venv/bin/ruff check .
