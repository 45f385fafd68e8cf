// Package config reads the TOML file of `pgfeed run`: the sources to read
// changes from, the sinks to deliver them to, and how each sink filters,
// routes, masks and encodes them.
//
// Parsing is strict and complete: every problem of a file (a syntax error,
// an unknown key, a value of the wrong type, a missing setting, a reference
// to an undefined source) is reported at once, one line each, naming the
// field, so a config is fixed in one pass instead of one error per start.
// Values may name environment variables, ${NAME} or ${NAME:-default}, so
// that secrets stay out of the file.
package config
