package pipeline

import "github.com/pgfeed/pgfeed/source"

// slotHealth is the slot part of a source's status: its health as the
// stream last read it, and the warning or error line it calls for.
func slotHealth(s *source.Stream) (*source.Health, string) {
	h, ok := s.Health()
	if !ok {
		return nil, ""
	}
	msg := h.Warning()
	if err := h.Err(); err != nil {
		msg = err.Error()
	}
	return &h, msg
}
