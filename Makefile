# The two commands README.md leads with. Each bootstraps what it needs (a cached
# virtual environment under ~/.cache/recstream, Kafka jars via Maven) on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
BOOTSTRAP = venv=$$(scripts/bootstrap.sh)
PYTEST_ARGS ?=

.PHONY: help demo test lint kafka-start kafka-stop

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

demo:  ## run the live demo: local Kafka, MovieLens-100K, a trained bundle, live recommendations
	@$(BOOTSTRAP); "$$venv/bin/recstream" demo

test:  ## run the whole test suite (starts its own Apache Kafka broker)
	@$(BOOTSTRAP); "$$venv/bin/python" -m pytest $(PYTEST_ARGS)

lint:  ## ruff and mypy
	@$(BOOTSTRAP); "$$venv/bin/ruff" check . && "$$venv/bin/ruff" format --check . && "$$venv/bin/mypy"

kafka-start:  ## start the local broker on 127.0.0.1:9092
	@$(BOOTSTRAP); "$$venv/bin/recstream" kafka start

kafka-stop:  ## stop the local broker
	@$(BOOTSTRAP); "$$venv/bin/recstream" kafka stop
