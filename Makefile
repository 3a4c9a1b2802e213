# The two entry points (see README): `make demo` and `make test`. Each creates its own virtualenv.
PYTHON ?= python3
DEMO_VENV := .venv-demo
TEST_VENV := .venv-test
# pip says what it collects and installs as it goes (a first install takes a few minutes).
PIP_FLAGS := --disable-pip-version-check --progress-bar off

.PHONY: demo test lint typecheck pytest docs bench-venv bench clean

$(DEMO_VENV)/.installed: pyproject.toml
	@echo "== make demo: creating $(DEMO_VENV) and installing tickwork[cli,demo,watch,plot]"
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install $(PIP_FLAGS) -e '.[cli,demo,watch,plot]'
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/tickwork demo

$(TEST_VENV)/.installed: pyproject.toml requirements/test.txt
	@echo "== make test: creating $(TEST_VENV) and installing tickwork with every framework it is tested against (a few minutes the first time)"
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/test.txt -e '.[cli,demo,watch,s3,plot]'
	touch $@

lint: $(TEST_VENV)/.installed
	@echo "== ruff"
	$(TEST_VENV)/bin/ruff check src tests benchmarks docs/_ext
	$(TEST_VENV)/bin/ruff format --check src tests benchmarks docs/_ext

typecheck: $(TEST_VENV)/.installed
	@echo "== mypy --strict"
	$(TEST_VENV)/bin/mypy

pytest: $(TEST_VENV)/.installed
	@echo "== pytest (the whole suite: about 8 minutes on 2 cores)"
	$(TEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The docs site (mkdocs.yml), built into site/ (gitignored): open site/index.html. The test
# command builds it too, with the same --strict (tests/test_docs_site.py).
docs: $(TEST_VENV)/.installed
	@echo "== mkdocs build --strict: the site goes to site/"
	$(TEST_VENV)/bin/python -m mkdocs build --strict

# The anchors (tf_keras, TensorFlow) live in their own environment, never beside tickwork's tests.
.bench-venv/.installed: pyproject.toml benchmarks/requirements.txt
	$(PYTHON) -m venv .bench-venv
	.bench-venv/bin/pip install $(PIP_FLAGS) -r benchmarks/requirements.txt -e '.[watch,s3]'
	touch $@

bench-venv: .bench-venv/.installed

clean:
	rm -rf $(DEMO_VENV) $(TEST_VENV) .bench-venv .mypy_cache .ruff_cache .pytest_cache .hypothesis \
		dist build site
