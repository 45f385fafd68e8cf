package source

import (
	"fmt"
	"testing"
)

// A spool replays, in order, the messages of every (sub)transaction that was
// not aborted: an aborted subtransaction loses exactly its own records,
// wherever they lie between the others'.
func TestSpoolAbortedSubtransactions(t *testing.T) {
	sp, err := newSpool(t.TempDir(), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	records := []struct {
		xid uint32
		msg string
	}{{10, "top 1"}, {11, "sub 11"}, {12, "sub 12"}, {10, "top 2"}, {11, "sub 11 again"}, {13, "sub 13"}, {12, "sub 12 again"}}
	for i, r := range records {
		if err := sp.add(r.xid, uint64(100+i), []byte(r.msg)); err != nil {
			t.Fatal(err)
		}
	}
	sp.abortSub(11)
	sp.abortSub(13)
	var got []string
	err = sp.replay(func(walStart uint64, msg []byte) error {
		got = append(got, fmt.Sprintf("%d:%s", walStart, msg))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[100:top 1 102:sub 12 103:top 2 106:sub 12 again]"; fmt.Sprint(got) != want {
		t.Fatalf("replayed %v, want %s", got, want)
	}
}
