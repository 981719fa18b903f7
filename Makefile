# The README's commands. Each target installs what it needs (apt, the test venv) first.
.PHONY: deps build run stop demo test bench nginx-check lint fuzz

deps:
	@scripts/install-deps.sh

build: deps
	swift build -c release

run: build
	@scripts/run.sh

stop:
	@scripts/stop.sh

# The whole story against the stack `make run` started (the fake Stripe), printed step by step.
demo:
	@scripts/venv.sh
	@.venv/bin/python scripts/demo.py

test: build
	@scripts/test.sh

# swift format's linter with the checked-in .swift-format (no force unwraps, no try!); make test runs it too.
lint:
	@scripts/lint.sh

bench: build
	@scripts/bench.sh

# Render the nginx config into a scratch prefix and run `nginx -t` on it.
nginx-check: deps
	@scripts/nginx-check.sh

# Coverage-guided fuzzing of the parsers of untrusted bytes (libFuzzer), FUZZ_SECONDS per target
# (default 60); not part of `make test` or CI. See docs/security.md, "Fuzzing".
fuzz: deps
	@scripts/fuzz.sh
