package redis

import (
	"context"
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

func open(t testing.TB, url string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", url, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	url := redistest.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		// A fresh prefix per store keeps the suite's stores apart in one database.
		return open(t, url, Options{KeyPrefix: "t" + t.Name()})
	})
}
