PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench gpu-check mutants mutants-hand wheel clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/visionattn train

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the long tests (-m slow), e.g. the property-based operator tests with their many-examples profile
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# mutation testing (not in CI: slow); docs/testing.md. GROUPS: some of ops checkpoint state images detection cli (default all)
mutants: $(STAMP)
	$(BIN)/python .ci/mutants.py run $(GROUPS)

# the hand-made mutants of issue 19, each applied to a private copy of the tree: every one must be killed
mutants-hand: $(STAMP)
	$(BIN)/python .ci/mutants.py hand

# a wheel in build/dist/ (experiments/ and configs/ ship inside it as package data)
wheel: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation -w build/dist .

lint: $(STAMP)
	$(BIN)/ruff check visionattn tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/ops.py

# the prepared GPU check (issue 20; docs/benchmarks.md): operator tests on CUDA, backend dispatch, compile, speed; one JSON
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --out runs/gpu_check.json

clean:
	rm -rf $(VENV) build *.egg-info
