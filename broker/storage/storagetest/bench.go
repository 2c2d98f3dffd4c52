package storagetest

import (
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Bench runs the storage benchmarks of the hot paths: consuming a code and
// rotating a refresh token.
func Bench(b *testing.B, newStore func(b *testing.B) storage.Storage) {
	b.Run("ConsumeCode", func(b *testing.B) {
		s := newStore(b)
		defer s.Close()
		c := ctx(b)
		cd := code(b)
		codes := make([]string, b.N)
		for i := range codes {
			codes[i] = random(b)
			if err := s.CreateCode(c, codes[i], cd); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.ConsumeCode(c, codes[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RotateRefresh", func(b *testing.B) {
		s := newStore(b)
		defer s.Close()
		c := ctx(b)
		f := family(b, "bench")
		toks := make([]string, b.N+1)
		for i := range toks {
			toks[i] = token(b, f.ID)
		}
		if err := s.CreateRefresh(c, f, toks[0]); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, _, err := s.RotateRefresh(c, toks[i], toks[i+1], now, time.Hour, storage.Retry{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchGrants runs the benchmarks of the grants in one step
// (storage.GrantStore): a code redeemed with its family started, a refresh
// checked and rotated. It skips a store without them.
func BenchGrants(b *testing.B, newStore func(b *testing.B) storage.Storage) {
	b.Run("RedeemCode", func(b *testing.B) {
		s := newStore(b)
		defer s.Close()
		gs, ok := s.(storage.GrantStore)
		if !ok {
			b.Skip("no storage.GrantStore")
		}
		c := ctx(b)
		cd := code(b)
		cd.Grant.ConnectorData = nil
		codes := make([]string, b.N)
		for i := range codes {
			codes[i] = random(b)
			if err := s.CreateCode(c, codes[i], cd); err != nil {
				b.Fatal(err)
			}
		}
		now := time.Now()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			red, err := gs.RedeemCode(c, codes[i], redemption(b, now))
			if err != nil || red.Family == nil {
				b.Fatalf("RedeemCode = %+v, %v", red, err)
			}
		}
	})
	b.Run("RefreshGrant", func(b *testing.B) {
		s := newStore(b)
		defer s.Close()
		gs, ok := s.(storage.GrantStore)
		if !ok {
			b.Skip("no storage.GrantStore")
		}
		c := ctx(b)
		f := family(b, "bench")
		f.Grant.ConnectorData = nil
		toks := make([]string, b.N+1)
		for i := range toks {
			toks[i] = token(b, f.ID)
		}
		if err := s.CreateRefresh(c, f, toks[0]); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r := rotation(b, f, toks[i])
			r.Next, r.Now = toks[i+1], now
			if _, _, err := gs.RefreshGrant(c, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
