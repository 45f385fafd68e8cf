package source

import "context"

// Prepare checks the server and creates (or aligns) the stream's
// publication as Open with Create does, without touching any slot. It is
// for callers that create the slot themselves, such as pgfeed serve, whose
// /v1/init creates a slot with an exported snapshot for its clients to read
// before they stream: the publication must exist before the slot, since
// pgoutput reads it in the slot's historic snapshot.
func Prepare(ctx context.Context, c Config) error {
	cfg, err := c.withDefaults()
	if err != nil {
		return err
	}
	cfg.Create = true
	meta, err := Connect(ctx, cfg.DSN)
	if err != nil {
		return err
	}
	defer meta.Close(context.Background())
	version, err := checkServer(ctx, meta)
	if err != nil {
		return err
	}
	_, _, err = ensurePublication(ctx, meta, &cfg, version)
	return err
}
