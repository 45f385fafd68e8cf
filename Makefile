# Habits, one word away. The scripts are the source of truth (CI runs scripts/test.sh).
.PHONY: demo test versions bench lint fuzz build image

# The commit goes in by -X too: the go command stamps none with -buildvcs=false.
LDFLAGS = -X github.com/pgfeed/pgfeed/internal/cli.commit=$(shell git rev-parse HEAD 2>/dev/null)

build:
	go build -ldflags "$(LDFLAGS)" -o pgfeed ./cmd/pgfeed

# The focused suite on PostgreSQL 14 to 18 (fetched once by scripts/pg-versions.sh).
versions:
	bash scripts/test-versions.sh

image:
	docker build -f deploy/Dockerfile --build-arg VERSION=$$(git describe --tags --always) --build-arg COMMIT=$$(git rev-parse HEAD) -t pgfeed .

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

lint:
	gofmt -l $$(git ls-files '*.go')
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: build
	./pgfeed bench

fuzz:
	go test ./internal/pgoutput -run XXX -fuzz FuzzParse -fuzztime 60s
	go test ./event -run XXX -fuzz FuzzArray -fuzztime 60s
	go test ./sink/webhook -run XXX -fuzz FuzzRetryAfter -fuzztime 60s
	go test ./config -run XXX -fuzz '^FuzzParse$$' -fuzztime 60s
	go test ./server/stream -run XXX -fuzz FuzzParseAck -fuzztime 60s
