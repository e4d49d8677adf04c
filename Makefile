# Local Azure ML: train, register, serve, batch-score and monitor a risk classifier.
# `make help` lists the targets.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZ_VENV := .venv-azureml
AZ_STAMP := $(AZ_VENV)/.installed
SPARK_STAMP := $(VENV)/.spark-installed
NODE_STAMP := node_modules/.installed

.DEFAULT_GOAL := help
# make serve's address and port: make serve HOST=0.0.0.0 PORT=8001
HOST ?= 127.0.0.1
PORT ?= 8000

## Show this help
help:
	@awk 'BEGIN {FS = ":.*"} /^## / {desc = substr($$0, 4); next} /^[a-zA-Z_-]+:/ && desc {printf "  \033[1m%-16s\033[0m %s\n", $$1, desc; desc = ""}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

# Azurite (the Azure Storage emulator) from npm into ./node_modules, as pinned in package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

# pyspark into .venv (requirements-spark.txt), once Java 17 or later is there for it to run on.
$(SPARK_STAMP): requirements-spark.txt | $(STAMP)
	@$(MAKE) --no-print-directory java
	$(PY) -m pip install --quiet -r requirements-spark.txt
	@touch $(SPARK_STAMP)

## Check for Java 17+ (Spark needs it); installs openjdk-17-jre-headless when run as root, else prints the command
java:
	@major=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1); \
	if [ -n "$$major" ] && [ "$$major" -ge 17 ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "Java 17 is missing: installing openjdk-17-jre-headless"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	else \
		echo "error: Spark needs Java 17 or later; install it with: sudo apt-get install -y openjdk-17-jre-headless" >&2; exit 1; \
	fi

## Create .venv and install the pinned requirements, pyspark included (done by demo and test when missing)
install: $(STAMP) $(SPARK_STAMP) $(NODE_STAMP)

$(AZ_STAMP): requirements-azureml.txt
	@test -x $(AZ_VENV)/bin/python || $(PYTHON) -m venv $(AZ_VENV)
	$(AZ_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AZ_VENV)/bin/python -m pip install --quiet -r requirements-azureml.txt
	@touch $(AZ_STAMP)

## Create .venv-azureml: Azure ML's inference server, apart from the project's pins (done by test)
install-azureml: $(AZ_STAMP)

## Regenerate azureml/environments/*-conda.yml from the pinned requirements files
azureml-conda:
	$(PYTHON) scripts/azureml_conda.py
.PHONY: install-azureml azureml-serve azureml-conda

## Serve score.py with Azure ML's inference server on http://127.0.0.1:5001 (latest local version)
azureml-serve: $(AZ_STAMP)
	@latest=$$(ls -d local_registry/model_v* 2>/dev/null | sort -V | tail -n 1); \
	test -n "$$latest" || { echo "error: no model registered: run make train" >&2; exit 1; }; \
	tmp=$$(mktemp -d); ln -s "$(CURDIR)/$$latest" "$$tmp/"; \
	echo "serving $$latest as $$tmp/$$(basename $$latest)"; \
	PYTHONPATH=$(CURDIR) $(AZ_VENV)/bin/python scripts/azmlinfsrv_local.py --entry_script score.py --model_dir "$$tmp" --port 5001

## Run the whole flow end to end on local storage
demo: $(STAMP)
	@bash scripts/demo.sh

## Run the whole flow on the German credit data (categories, string target) in demo_credit/, apart from make demo
demo-credit: $(STAMP)
	@bash scripts/demo_credit.sh

## After make demo: serve with data collection, send ordinary and drifted traffic, run monitor.py, then the report
demo-monitor: $(STAMP)
	@bash scripts/demo_monitor.sh

## Rehearse a safe rollout on the endpoint from azureml/online/ (blue/green 90/10, mirror, 0/100 under load), in a temporary folder
demo-rollout: $(STAMP)
	@$(PY) scripts/demo_rollout.py

## Run the batch pipeline and the analysis against Azure Blob Storage (Azurite from npm, started and stopped)
demo-blob: $(STAMP) $(NODE_STAMP)
	@bash scripts/demo_blob.sh

## Rewrite the README's make demo excerpt from a real run of the demo (in a temporary copy)
readme-demo: $(STAMP)
	$(PY) scripts/readme_demo.py

## Three nightly files scored by the Spark engine, the run log and the analysis, in zones of their own
demo-spark: $(STAMP) $(SPARK_STAMP)
	@bash scripts/demo_spark.sh

## Benchmark the Spark engine (local[1], local[2]) against the streaming engine and naive pandas (heavy)
bench-spark: $(STAMP) $(SPARK_STAMP)
	$(PY) bench/bench_spark.py

## Run the test suite
test: $(STAMP) $(SPARK_STAMP) $(AZ_STAMP) $(NODE_STAMP)
	$(PY) -m pytest

## Train one more model version
train: $(STAMP)
	$(PY) train.py

## List the registered model versions
registry: $(STAMP)
	$(PY) registry.py list

## Open the MLflow UI on http://127.0.0.1:5000
mlflow-ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

## Render the Mermaid diagrams of architecture_diagram.md to docs/diagrams/ (installs chromium and mmdc when missing)
diagrams:
	@bash scripts/render_diagrams.sh

## Run the reliability suites (fuzzing, faults, soak, security) and print their figures; sizes via RELIABILITY_* env vars
reliability: $(STAMP)
	@figures=$$(mktemp -d); trap 'rm -rf "$$figures"' EXIT; \
	RELIABILITY_FIGURES_DIR="$$figures" $(PY) -m pytest -q tests/test_reliability_*.py; status=$$?; \
	echo; $(PY) scripts/reliability_table.py "$$figures" || status=1; exit $$status

## Serve the online endpoint on http://127.0.0.1:8000 (POST /predict, /docs; make serve HOST=... PORT=... for another)
serve: $(STAMP)
	$(PY) app_score_api.py --host $(HOST) --port $(PORT)

## Benchmark the online endpoint against mlflow models serve (needs wrk; see bench/README.md)
bench-online: $(STAMP)
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
	$(PY) bench/bench_online.py

## Benchmark the endpoint from its YAML (90/10, /metrics) and with --workers 2 against the plain endpoint and the floor (needs wrk)
bench-rollout: $(STAMP)
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
	$(PY) bench/bench_rollout.py

## Benchmark the endpoint with data collection against without (needs wrk; see bench/README.md)
bench-collect: $(STAMP)
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
	$(PY) bench/bench_collect.py
.PHONY: serve bench-online bench-rollout bench-collect

## Start Azurite's blob service on 127.0.0.1:10000 (data in .azurite/) for --storage blob
azurite: $(NODE_STAMP)
	node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort 10000 --location .azurite \
		--skipApiVersionCheck --disableTelemetry

## Analyse the curated predictions: bucket and trend tables, charts and reports/report.html
report: $(STAMP)
	$(PY) analyze_predictions.py

## Render reports/report.html with headless Chromium into reports/report.png (apt-installs chromium if missing)
report-screenshot: $(STAMP)
	@bash scripts/screenshot_report.sh

.PHONY: report report-screenshot

## Remove generated data, models, runs, logs and collected requests (keeps .venv)
clean:
	rm -rf mlflow.db mlruns artifacts reports day1_breast_cancer.csv demo_credit collected
	find local_registry raw curated logs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +

.PHONY: help install java demo demo-credit demo-rollout demo-monitor demo-blob demo-spark bench-spark test train registry mlflow-ui diagrams reliability azurite clean
