package pgfeed_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

var pg *pgcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, &pg, pgcluster.Options{}))
}

// exampleDSN is the database the examples use: a throwaway cluster here;
// in your program, your own database.
func exampleDSN() string { return pg.DSN("") }

// Stream the changes of a table, acking each one once handled. Run it again
// without the Ack and the same insert is delivered again.
func Example() {
	ctx := context.Background()
	dsn := exampleDSN()

	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "CREATE TABLE users(id int PRIMARY KEY, name text, joined date)"); err != nil {
		log.Fatal(err)
	}

	stream, err := pgfeed.Open(ctx, pgfeed.Config{DSN: dsn, Slot: "example", Tables: []string{"public.users"}, Create: true})
	if err != nil {
		log.Fatal(err)
	}
	defer stream.Close()

	if _, err := db.Exec(ctx, "INSERT INTO users VALUES (1, 'Ada', '1815-12-10')"); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(ctx, "UPDATE users SET name = 'Ada Lovelace' WHERE id = 1"); err != nil {
		log.Fatal(err)
	}

	for i := 0; i < 2; i++ {
		ev, err := stream.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		row, err := ev.After.Map(ev.Rel)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Op, ev.Schema+"."+ev.Table, row["id"], row["name"], row["joined"])
		if err := stream.Ack(ev.CommitLSN); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// insert public.users 1 Ada 1815-12-10
	// update public.users 1 Ada Lovelace 1815-12-10
}

// Print events as the native JSON lines of `pgfeed stream`.
func ExampleEvent_AppendJSON() {
	ctx := context.Background()
	dsn := exampleDSN()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "CREATE TABLE prices(sku text PRIMARY KEY, amount numeric, tags text[])"); err != nil {
		log.Fatal(err)
	}
	stream, err := pgfeed.Open(ctx, pgfeed.Config{DSN: dsn, Slot: "example_json", Publication: "example_json", Tables: []string{"public.prices"}, Create: true})
	if err != nil {
		log.Fatal(err)
	}
	defer stream.Close()
	if _, err := db.Exec(ctx, "INSERT INTO prices VALUES ('A-1', 12.50, '{new,sale}')"); err != nil {
		log.Fatal(err)
	}
	ev, err := stream.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// Positions differ from run to run; the row does not.
	ev.LSN, ev.CommitLSN, ev.XID, ev.CommitTime = 0, 0, 0, time.Time{}
	fmt.Println(string(ev.AppendJSON(nil)))
	// Output:
	// {"op":"insert","schema":"public","table":"prices","lsn":"0/0","commit_lsn":"0/0","xid":0,"seq":1,"key":{"sku":"A-1"},"before":null,"after":{"sku":"A-1","amount":"12.50","tags":["new","sale"]}}
}
