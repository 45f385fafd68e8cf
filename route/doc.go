// Package route decides what happens to a change event between its source
// and a sink's encoder: whether the sink wants the table at all, which
// columns it may see (dropped or masked), which destination (topic, subject,
// stream) the event goes to, and the message key.
//
// Everything here is a pure function of the event and the sink's settings:
// no I/O, so a Router can be tested, fuzzed and benchmarked alone. Events are
// shared by every sink of a source, so a Router never modifies one: an event
// it has to change is copied, and the copy gets its own Relation.
package route
