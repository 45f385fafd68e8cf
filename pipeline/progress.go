package pipeline

import (
	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/snapshot"
)

// backfillProgress keeps a source's backfill progress in the checkpoint
// store, so that a restarted pipeline resumes a backfill mid-table.
type backfillProgress struct{ store checkpoint.Storage }

func (b backfillProgress) Progress(source, table string) (snapshot.Progress, bool, error) {
	p, ok, err := b.store.Progress(source, table)
	return snapshot.Progress{LastKey: p.LastKey, Rows: p.Rows, Done: p.Done}, ok, err
}

func (b backfillProgress) SetProgress(source, table string, p snapshot.Progress) error {
	return b.store.SetProgress(source, table, checkpoint.Progress{LastKey: p.LastKey, Rows: p.Rows, Done: p.Done})
}
