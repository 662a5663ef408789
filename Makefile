# Entry points of backfill-operator. `make` alone lists them.

SHELL := bash
.DEFAULT_GOAL := help

CARGO ?= cargo
KUBECONFIG := $(CURDIR)/.cluster/kubeconfig
export KUBECONFIG
# The chart's copy of the CRDs is generated too, once the chart exists.
CRD_DIRS := crds $(wildcard charts/backfill-operator/crds)

.PHONY: help cluster cluster-down crds test bench demo lint tools image

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

tools: ## Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm (cached)
	bash hack/build-tools.sh

cluster: ## Start the local control plane (kubeconfig: .cluster/kubeconfig)
	bash hack/cluster.sh up
	@echo "export KUBECONFIG=$(KUBECONFIG) PATH=$(CURDIR)/.cluster/bin:\$$PATH"

cluster-down: ## Stop the local control plane
	bash hack/cluster.sh down

crds: ## Regenerate the CRDs from src/api
	$(CARGO) run --quiet -- crdgen $(CRD_DIRS)

# Unit tests, doc tests and the end-to-end tests of tests/ against the
# local control plane. It is stopped afterwards, even when a test fails or
# the run is interrupted (KEEP_CLUSTER=1 leaves it up); the exit status is
# the tests'.
test: ## Run every test against a local control plane (started and stopped here)
	@if [ -z "$(KEEP_CLUSTER)" ]; then trap 'bash hack/cluster.sh down' EXIT; fi; \
	trap 'exit 130' INT TERM; \
	bash hack/cluster.sh up || exit $$?; \
	status=0; \
	$(CARGO) test --all-targets || status=$$?; \
	$(CARGO) test --doc || status=$$?; \
	if [ $$status -eq 0 ]; then echo "make test: all tests passed"; \
	else echo "make test: FAILED (exit $$status)"; fi; \
	exit $$status

# The planner against the bare cron engines, then the operator beside
# the CronJob controller, kube-controller-manager and a plain client on a
# local control plane (started and stopped here, with the API server's
# audit log on: the requests per session are counted by user agent).
bench: ## Run the benchmarks (prints the side-by-side table)
	@if [ -z "$(KEEP_CLUSTER)" ]; then trap 'bash hack/cluster.sh down' EXIT; fi; \
	trap 'exit 130' INT TERM; \
	AUDIT_LOG=1 bash hack/cluster.sh up || exit $$?; \
	$(CARGO) bench --bench planner && $(CARGO) bench --bench operator

demo: ## Run the operator on the local control plane with the example minutely Schedule
	bash hack/demo.sh

# The static release binary alone in an OCI image, no container engine
# needed; the Dockerfile builds its equivalent with one. tests/image.rs
# reads it back (and runs hack/image.sh, which is quick once this ran).
image: ## Build the container image archive (target/image/backfill-operator-<version>.tar)
	CARGO=$(CARGO) bash hack/image.sh

lint: ## Check formatting and clippy warnings
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings
