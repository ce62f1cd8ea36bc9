# Two commands on a fresh machine: `make run` (execute the notebooks) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install broker-ready run test lab broker-stop bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,frameworks]"
	touch $(STAMP)

install: $(STAMP)

# Before anything that needs a broker: find one, or install rabbitmq-server where the
# system's package manager needs no question, or stop at once with the ways to get one.
# Standard library only, so it runs before (and without) the virtual environment.
broker-ready:
	@$(PYTHON) -m helpers.broker.install

# Execute every notebook headless against the resolved broker, write build/*.html, and the
# round robin vs prefetch=1 comparison from the CLI. A private node that was not running
# before is stopped again at the end.
run: broker-ready $(STAMP)
	@mkdir -p build; \
	$(BIN)/python -m helpers broker status > /dev/null 2>&1; was_up=$$?; status=0; \
	$(BIN)/python -m helpers run --workers 2 --prefetch 0 --tasks 40 --heavy 0.2 --light 0.02 \
		--json build/round_robin.json --plot build/round_robin.png || status=1; \
	$(BIN)/python -m helpers run --workers 2 --prefetch 1 --tasks 40 --heavy 0.2 --light 0.02 \
		--json build/prefetch1.json --plot build/prefetch1.png || status=1; \
	$(BIN)/python -m helpers notebooks notebooks --out build || status=1; \
	if [ $$was_up -ne 0 ]; then $(BIN)/python -m helpers broker stop || true; fi; \
	exit $$status

# The browser test drives the system's chromium: .ci/ensure-chromium installs it where that
# needs no question, or says the browser test will skip (NO_BROWSER=1 leaves it out: CI's
# RabbitMQ 4 parts run `-m "broker and not browser and not no_management and not tooling"`).
# PYTEST_ARGS narrows the run, e.g. `make test PYTEST_ARGS="-m broker"` (CI's RabbitMQ 4 part).
test: broker-ready $(STAMP)
	@[ -n "$$NO_BROWSER" ] || bash .ci/ensure-chromium
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

# Side-by-side benchmarks (figures, not tests; kept out of `make test`): the project's
# workers beside tutorial-style pika workers and Celery, on one broker in one run. Prints one
# table, writes build/bench.json and docs/figures/bench-side-by-side.png; a few minutes.
# Celery comes from the `frameworks` extra, which `make install` installs (`bench` pins the
# same version). A private node not running before is stopped after.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[test,frameworks,bench]"
	touch $(BENCH_STAMP)

bench: broker-ready $(BENCH_STAMP)
	@$(BIN)/python -m helpers broker status > /dev/null 2>&1; was_up=$$?; status=0; \
	HELPERS_FORK_SERVER=$${HELPERS_FORK_SERVER:-1} $(BIN)/python -m benchmarks.bench $(BENCH_ARGS) || status=1; \
	if [ $$was_up -ne 0 ]; then $(BIN)/python -m helpers broker stop || true; fi; \
	exit $$status

# Starts the private node (an AMQP_URL broker is not ours to start), then JupyterLab on
# 127.0.0.1 only, its kernels over IPC (no "running over TCP without encryption" warning);
# as root JupyterLab also needs --allow-root. LAB_ARGS adds options.
lab: broker-ready $(STAMP)
	@[ -n "$$AMQP_URL" ] || $(BIN)/python -m helpers broker start
	$(BIN)/jupyter lab --ip=127.0.0.1 --KernelManager.transport=ipc \
		$$([ "$$(id -u)" -eq 0 ] && echo --allow-root) $(LAB_ARGS) notebooks/

broker-stop: $(STAMP)
	$(BIN)/python -m helpers broker stop

clean:
	rm -rf build .pytest_cache
