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
//
// Order: messages of a Write are published in batch order on one
// connection, and the client does not buffer while it reconnects, so a
// failed Write leaves at most a prefix of the batch in the stream; its
// redelivery stores the rest after it. Only a server that refuses one
// message for good but stores later ones (a message over the stream's
// max_msg_size) breaks this, and then every retry fails on that message.
//
// Durability is the stream's: a PubAck means stored by the server (by a
// quorum of replicas for a replicated stream). JetStream file storage
// fsyncs on its own schedule, so a machine crash (not a process kill) can
// lose the last acknowledged messages of a single-replica stream.
package nats
