# unroot — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test lint unit policy-test dashboard-browser monitoring image image-dev e2e e2e-dev bench fuzz build release clean

# Where cargo puts what it builds (as the scripts find it too).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

## run: serve the webhook on 127.0.0.1:8443 (admin on :8080, the dashboard on
## http://127.0.0.1:8081/dashboard) with the embedded default policy and a
## self-issued certificate; the CA goes to certs/ca.crt.
run:
	$(CARGO) run --bin unroot -- serve --standalone

## test: formatting, lints, unit and integration tests, the policy test
## example, the dashboard in a real browser, the monitoring assets, then the end-to-end suite on a real
## one-node cluster (e2e-dev: the image built from the Containerfile with
## the dev profile, on the dependencies the tests compiled).
test: lint unit policy-test dashboard-browser monitoring e2e-dev

## lint and unit cover the whole workspace: this package (the shell) and
## crates/unroot-core (the pure core).
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --all-targets

## policy-test: `unroot test` on the worked example (examples/policy-test/,
## docs/policy-test.md); any failed case fails the run.
policy-test:
	$(CARGO) run --quiet --bin unroot -- test examples/policy-test

build:
	$(CARGO) build --bin unroot

## dashboard-browser: /dashboard in headless Chromium; its numbers must be
## those of /metrics; screenshot in target/dashboard.png (installs Debian's
## chromium itself; see tests/browser/run.sh).
dashboard-browser:
	tests/browser/run.sh

## monitoring: the dashboard, alerts and ServiceMonitor of manifests/monitoring/
## against promtool and a real Prometheus scraping unroot (installs the Debian
## prometheus package itself; see manifests/monitoring/tests/run.sh).
monitoring: build
	manifests/monitoring/tests/run.sh

## image: the Containerfile built with podman into the OCI archive
## target/image/unroot.oci.tar; prints its digest. Installs podman and
## mmdebstrap itself; no registry: it makes the bases from Debian packages
## (once, cached in ~/.cache/unroot-image) and builds offline, reusing
## target/ (see image/build.sh).
image:
	image/build.sh release

## image-dev: the same with the dev profile, into unroot-dev.oci.tar: what
## `make test` runs; it reuses the dependencies `make unit` compiled.
image-dev:
	image/build.sh dev

## e2e: the end-to-end scenarios on a real one-node Kubernetes 1.20 cluster
## (built from Debian's source once, cached in ~/.cache/unroot-e2e; installs
## its Debian packages itself), against unroot installed from manifests/ with
## the image `make image` built (by its digest); scenarios that run unroot on
## the host run that image's binary. E2E_KUBECONFIG=... runs them against
## another cluster instead (see e2e/README.md).
e2e: image
	E2E_UNROOT_BINARY=$(TARGET_DIR)/image/unroot E2E_UNROOT_ARCHIVE=$(TARGET_DIR)/image/unroot.oci.tar e2e/run.sh

## e2e-dev: the same suite with the image from `make image-dev`: the dev
## profile, on the dependencies `make unit` has compiled already. Same
## source, Containerfile and manifests; a release build would add about five
## minutes to `make test` on a 2-core machine.
e2e-dev: image-dev
	E2E_UNROOT_BINARY=$(TARGET_DIR)/image/unroot-dev E2E_UNROOT_ARCHIVE=$(TARGET_DIR)/image/unroot-dev.oci.tar e2e/run.sh

release:
	$(CARGO) build --release --bin unroot

## bench: criterion micro-benchmarks, a TLS load test against the null
## responder (examples/null_responder.rs), memory and startup; rewrites
## BENCHMARKS.md. Takes several minutes; installs oha into ~/.cache once.
## Not part of `make test`.
bench:
	python3 bench/run.py

## fuzz: the AdmissionReview handler and the policy parser under libFuzzer,
## FUZZ_SECONDS (default 60) each on one core; a crash lands in
## tests/fixtures/fuzz/<target>/, which `make unit` replays. Installs
## cargo-fuzz into ~/.cache/unroot-fuzz once. Not part of `make test`.
fuzz:
	fuzz/run.sh

clean:
	$(CARGO) clean
