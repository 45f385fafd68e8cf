package brokertest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// NATSAuth is a nats-server that asks for one kind of credentials, with
// files of right and wrong ones.
type NATSAuth struct {
	*Server
	File      string // the right seed (nkey) or .creds file
	WrongFile string // one of a user the server does not know
}

// StartNATSNKey starts nats-server (with JetStream) whose only user
// authenticates with an NKey; File is that user's seed file.
func StartNATSNKey(t testing.TB) *NATSAuth {
	t.Helper()
	user, other := must(nkeys.CreateUser()), must(nkeys.CreateUser())
	conf := writeFile(t, "nkey.conf", fmt.Sprintf("authorization { users = [ { nkey: %q } ] }\n", must(user.PublicKey())))
	return &NATSAuth{
		Server:    StartNATS(t, "-c", conf),
		File:      writeFile(t, "user.nk", string(must(user.Seed()))),
		WrongFile: writeFile(t, "other.nk", string(must(other.Seed()))),
	}
}

// StartNATSOperator starts nats-server in operator (decentralised JWT)
// mode: an operator, a system account and one account with JetStream,
// their JWTs preloaded. File is a .creds file of a user of that account;
// WrongFile one of an account signed by another operator.
func StartNATSOperator(t testing.TB) *NATSAuth {
	t.Helper()
	op := must(nkeys.CreateOperator())
	opJWT := must(jwt.NewOperatorClaims(must(op.PublicKey())).Encode(op))
	account := func(signer nkeys.KeyPair, jetStream bool) (nkeys.KeyPair, string) {
		acc := must(nkeys.CreateAccount())
		claims := jwt.NewAccountClaims(must(acc.PublicKey()))
		if jetStream {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		return acc, must(claims.Encode(signer))
	}
	creds := func(acc nkeys.KeyPair) string {
		user := must(nkeys.CreateUser())
		uc := jwt.NewUserClaims(must(user.PublicKey()))
		uc.IssuerAccount = must(acc.PublicKey())
		return string(must(jwt.FormatUserConfig(must(uc.Encode(acc)), must(user.Seed()))))
	}
	sys, sysJWT := account(op, false) // the system account may not have JetStream
	acc, accJWT := account(op, true)
	sysPub, accPub := must(sys.PublicKey()), must(acc.PublicKey())
	conf := writeFile(t, "operator.conf", fmt.Sprintf("operator: %q\nsystem_account: %q\nresolver: MEMORY\nresolver_preload: { %s: %q, %s: %q }\n",
		opJWT, sysPub, sysPub, sysJWT, accPub, accJWT))
	stranger, _ := account(must(nkeys.CreateOperator()), true)
	return &NATSAuth{
		Server:    StartNATS(t, "-c", conf),
		File:      writeFile(t, "user.creds", creds(acc)),
		WrongFile: writeFile(t, "stranger.creds", creds(stranger)),
	}
}

// must returns v, and panics on err: making keys and JWTs fails only on
// a broken random source.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func writeFile(t testing.TB, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
