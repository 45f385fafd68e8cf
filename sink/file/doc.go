// Package file is a sink that appends changes as JSON lines to numbered files
// in a folder (changes-000001.jsonl, changes-000002.jsonl, ...), rotated by
// size and/or age. Every Write is fsynced before it returns, and a restarted
// sink appends to the newest file, so the folder is a durable, ordered log of
// every change pgfeed acked.
package file
