# Habits, one word away. The scripts are the source of truth (CI runs scripts/test.sh).
.PHONY: demo test bench lint fuzz build

build:
	go build -o pgfeed ./cmd/pgfeed

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
