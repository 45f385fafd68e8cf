package source

// The PostgreSQL major versions pgfeed supports and tests against. Older
// servers lack what pgfeed relies on (pgoutput protocol v2, the slot
// statistics view); newer ones are tried, but untested.
const (
	MinServerVersion = 14
	MaxServerVersion = 18
)
