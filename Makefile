# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint docs clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# Pin torch first: the CPU wheel lies on local disk; a bare "torch" would pull a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# The rest with uv where it installs (a minute faster here than pip: parallel downloads,
	# bytecode compiled on every core), else with pip. torch==2.13.0 is asked for again so
	# that neither replaces the build installed above.
	$(BIN)/python -m pip install --quiet uv && $(BIN)/uv pip install --quiet --python $(BIN)/python \
		--compile-bytecode -e '.[dev]' torch==2.13.0 \
		|| $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/elbokit fit --data digits --latent-dim 8 --hidden 256,256 --batch-size 32 \
		--epochs 100 --patience 20 --eval-k 5000 --seed 0 --out runs/demo --overwrite
	$(BIN)/elbokit sample runs/demo -n 64 --mean -o runs/demo/samples.png

# One pytest-xdist worker per core (at most 4), a test file to a worker: files share costly
# module fixtures (the SMS classifiers, a trained sweep). `pytest` alone runs them in one process.
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

# The report test opens report.html in headless Chromium. On a Debian machine where we are
# root (this one, CI) install Debian's chromium; elsewhere that test is skipped, never failed.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium >/dev/null 2>&1; }; } \
		|| echo "chromium not installed: the browser test of report.html will be skipped"; }

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/discrete.py
	$(BIN)/python benchmarks/spam.py
	$(BIN)/python benchmarks/mnist_quality.py
	$(BIN)/python benchmarks/ddp_scaling.py
	$(BIN)/python benchmarks/tables.py

# ruff over everything; mypy over the public API (the files and settings: [tool.mypy] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,lint]'
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

# The documentation site, built offline into site/; --strict fails on a broken link or reference.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
