// Package websocket is the websocket sink of `pgfeed run`: it serves the
// pipeline's records to WebSocket clients, one frame per record in the
// sink's format, and takes their acks, {"lsn":"X/Y"} (the commit_lsn of a
// frame received: the protocol of `pgfeed serve`, see internal/wsproto).
//
// Durability. Write returns only once every client connected acked every
// record of the batch, and at least one client did: only then does the
// pipeline confirm the batch to PostgreSQL. An ack of a position covers
// every frame sent to that client with a commit_lsn up to it; a
// transaction split over two batches is acked once per batch. With no
// client connected, Write waits (logged once per wait): the slot waits,
// nothing is lost, and nothing is buffered beyond the batch in flight. A
// client that connects while a batch is in flight receives it whole; a
// client that reconnects receives again whatever it did not ack.
//
// Slow clients. A client holds at most MaxLagRecords records and
// MaxLagBytes bytes sent and unacked; beyond, its next frames wait for its
// acks. A client that acks nothing for AckTimeout while it holds frames
// unacked (because it fell that far behind, or stopped acking), or that
// takes longer than WriteTimeout to take a frame, is dropped with an error
// frame; the sink goes on with the others.
//
// Auth. With a Token, every client presents it (Authorization: Bearer
// TOKEN, or ?access_token=TOKEN for browsers); without one, only clients
// on a loopback address are served. Refusals, malformed acks and acks of
// positions never sent get an error frame {"error":"..."}.
package websocket
