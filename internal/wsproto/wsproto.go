// Package wsproto is the frame and ack protocol that pgfeed's WebSocket
// endpoints share (`pgfeed serve`'s streams and the websocket sink of
// `pgfeed run`): clients ack with {"lsn":"X/Y"}, and every problem comes
// as one error frame {"error":"..."}, followed by a close frame when the
// session cannot go on.
package wsproto

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/event"
)

// AckHint tells a client what an ack looks like; error frames about a bad
// message end with it.
const AckHint = `send {"lsn":"X/Y"} with the nextlsn (wal2json) or commit_lsn of a frame received`

// ackMessage is what clients send: {"lsn":"0/170FCB0"}. A number is taken
// as the position in decimal, as Debezium prints LSNs.
type ackMessage struct {
	LSN json.RawMessage `json:"lsn"`
}

// ParseAck reads a client's ack: {"lsn":"X/Y"}, or the position in
// decimal (a JSON number or string), as Debezium prints it.
func ParseAck(b []byte) (event.LSN, error) {
	var m ackMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("malformed message %.60q: %v: %s", b, err, AckHint)
	}
	if len(m.LSN) == 0 || string(m.LSN) == "null" {
		return 0, fmt.Errorf("message %.60q has no lsn: %s", b, AckHint)
	}
	if m.LSN[0] == '"' {
		var txt string
		if err := json.Unmarshal(m.LSN, &txt); err != nil {
			return 0, fmt.Errorf("malformed lsn %.40s: %s", m.LSN, AckHint)
		}
		if lsn, err := event.ParseLSN(txt); err == nil {
			return lsn, nil
		}
		if n, err := strconv.ParseUint(txt, 10, 64); err == nil {
			return event.LSN(n), nil
		}
		return 0, fmt.Errorf("malformed lsn %q: %s", txt, AckHint)
	}
	n, err := strconv.ParseUint(string(m.LSN), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed lsn %.40s: %s", m.LSN, AckHint)
	}
	return event.LSN(n), nil
}

// ErrorBody is the one error shape: HTTP bodies and error frames alike.
type ErrorBody struct {
	Error string `json:"error"`
}

// SendError writes an error frame, giving up after timeout: a client
// that does not read is not waited for.
func SendError(ctx context.Context, conn *websocket.Conn, timeout time.Duration, msg string) {
	b, _ := json.Marshal(ErrorBody{Error: msg})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_ = conn.Write(ctx, websocket.MessageText, b)
}

// Fail sends an error frame and closes the connection with code, the
// message (cut to what a close frame holds) as its reason.
func Fail(conn *websocket.Conn, timeout time.Duration, code websocket.StatusCode, msg string) {
	SendError(context.Background(), conn, timeout, msg)
	reason := msg
	if len(reason) > 120 { // a close reason holds at most 123 bytes
		reason = strings.ToValidUTF8(reason[:120], "")
	}
	conn.Close(code, reason)
}
