package stream

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/pgfeed/pgfeed/route"
)

// Token is a bearer token a client presents, and what it may read.
type Token struct {
	// Secret is the token itself, sent as "Authorization: Bearer SECRET"
	// (or, for browsers, whose WebSocket API cannot set headers, as
	// ?access_token=SECRET on /v1/lr/stream).
	Secret string
	// Tables are globs ("public.orders", "app.*") of the tables the token
	// may read, in snapshots and streams alike; changes of other tables
	// are left out of its frames. Empty: every table.
	Tables []string

	patterns []route.TablePattern
	sum      [32]byte
}

// allows reports whether the token may read schema.table.
func (t *Token) allows(schema, table string) bool {
	if t == nil || len(t.patterns) == 0 {
		return true
	}
	for _, p := range t.patterns {
		if p.Match(schema, table) {
			return true
		}
	}
	return false
}

// prepareTokens parses the tokens' table globs.
func prepareTokens(tokens []Token) ([]*Token, error) {
	out := make([]*Token, len(tokens))
	for i, t := range tokens {
		if len(t.Secret) < 16 {
			return nil, fmt.Errorf("token %d is %d characters long: use at least 16 random characters (openssl rand -hex 32)", i+1, len(t.Secret))
		}
		for _, g := range t.Tables {
			p, err := route.ParseTablePattern(g)
			if err != nil {
				return nil, fmt.Errorf("token %d: tables: %w", i+1, err)
			}
			t.patterns = append(t.patterns, p)
		}
		t.sum = sha256.Sum256([]byte(t.Secret))
		out[i] = &t
	}
	return out, nil
}

type tokenKey struct{}

// tokenOf returns the token the request presented (nil without tokens).
func tokenOf(ctx context.Context) *Token {
	t, _ := ctx.Value(tokenKey{}).(*Token)
	return t
}

// authenticate checks the bearer token when the server has tokens.
func (s *Server) authenticate(r *http.Request) (*http.Request, *apiError) {
	if len(s.tokens) == 0 {
		return r, nil
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok && r.URL.Path == "/v1/lr/stream" {
		secret, ok = r.URL.Query().Get("access_token"), r.URL.Query().Has("access_token")
	}
	if !ok || secret == "" {
		return r, errorf(http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer TOKEN")
	}
	// Compare digests in constant time: neither the length nor the
	// content of a token leaks through timing.
	sum := sha256.Sum256([]byte(secret))
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			return r.WithContext(context.WithValue(r.Context(), tokenKey{}, t)), nil
		}
	}
	return r, errorf(http.StatusUnauthorized, "invalid bearer token: check the token the server was given (--token)")
}
