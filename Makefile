# Everyday commands; each is the one README.md or .ci/run uses.
.PHONY: test race lint bench demo ci

test:
	go test ./...

# The race detector on broker/..., verify/..., connectors/ldap/... and e2e/ (.ci/race).
race:
	bash .ci/race

# gofmt, go vet and the pinned staticcheck (.ci/lint).
lint:
	bash .ci/lint

bench:
	go test -run='^$$' -bench=. ./broker/... ./verify/... ./mapping/...

demo:
	go run ./cmd/fedbroker demo

# Everything CI runs; installs redis-server and chromium when missing.
ci:
	bash .ci/run
