// Package nats is a sink that publishes each record to NATS, on the subject
// the pipeline's route gave it (sink.Record.Topic).
//
// By default it publishes to JetStream: every message carries the event's
// identity as Nats-Msg-Id, so the stream drops a redelivered event within
// its duplicate window, and Write returns only once the server acknowledged
// every message (stored by the stream). The sink can check at Open that a
// stream captures its subjects, or create that stream. Plain core NATS
// publishing (Options.Core) reaches only the subscribers connected at that
// moment and keeps nothing: it is at-most-once.
package nats
