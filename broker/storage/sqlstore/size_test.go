package sqlstore

import (
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// familyBytes measures what family id takes: its row, its entries in the
// table's indexes, and the grant's JSON within the row.
//
// SQLite: dbstat's payload of the table and of each of its indexes (the
// store holds this one family only). PostgreSQL: pg_column_size of the
// row (tuple header included) and, per index, an index tuple's 8-byte
// header plus its key, 8-byte aligned.
func familyBytes(t *testing.T, s *Store, id string) (row, index, grant int) {
	t.Helper()
	ctx := testCtx(t)
	if err := s.r.QueryRowContext(ctx, `SELECT length(grant_data) FROM refresh_families WHERE id = $1`, id).Scan(&grant); err != nil {
		t.Fatal(err)
	}
	switch s.Kind() {
	case "sqlite":
		var n int
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM refresh_families`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("families in the store = %d, %v; want only the one measured", n, err)
		}
		err := s.r.QueryRowContext(ctx, `SELECT
	coalesce(sum(CASE WHEN name = 'refresh_families' THEN payload END), 0),
	coalesce(sum(CASE WHEN name <> 'refresh_families' THEN payload END), 0)
FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'refresh_families')`).Scan(&row, &index)
		if err != nil {
			t.Fatal(err)
		}
	case "postgres":
		err := s.r.QueryRowContext(ctx, `SELECT pg_column_size(f.*),
	((8 + pg_column_size(id) + 7) / 8 * 8) + 16 + ((8 + coalesce(pg_column_size(subject), 0) + 7) / 8 * 8)
FROM refresh_families f WHERE id = $1`, id).Scan(&row, &index)
		if err != nil {
			t.Fatal(err)
		}
	}
	return row, index, grant
}

// TestRefreshFamilySizeConstant: 1,000 rotations leave a family's size
// where one rotation left it. Run with -v for the bytes per family that
// BENCHMARKS.md records.
func TestRefreshFamilySizeConstant(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		var sizes [2][3]int
		for i, n := range []int{1, 1000} {
			s := b.fresh(t, Options{})
			f, _ := storagetest.RotateMany(t, s, n)
			row, index, grant := familyBytes(t, s, f.ID)
			sizes[i] = [3]int{row, index, grant}
			t.Logf("%s: bytes per refresh family after %d rotations: row %d + indexes %d = %d, of which the grant's JSON %d: %d beyond the grant",
				b.name, n, row, index, row+index, grant, row+index-grant)
			s.Close()
		}
		one, many := sizes[0], sizes[1]
		if many[0] > one[0]+8 || many[1] > one[1]+8 {
			t.Errorf("after 1000 rotations: row %d, indexes %d; after 1: row %d, indexes %d; want the same", many[0], many[1], one[0], one[1])
		}
		if beyond := one[0] + one[1] - one[2]; beyond > 600 {
			t.Errorf("a family takes %d bytes beyond its grant, want well under 1 KB", beyond)
		}
	})
}
