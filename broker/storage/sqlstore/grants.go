package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The grants of the token endpoint in one transaction each
// (storage.GrantStore), made of the statements of the methods they stand
// for: MarkSeen's for the proof, ConsumeCode's for the code, MarkSeen's
// read for the ended session, CreateRefresh's for the family, and
// RotateRefresh's locked decision for a refresh. Every lock is taken in
// the order the single methods take theirs (the proof's mark, then the
// code's or the family's row, the epoch row last, when the transaction
// commits), so that the grants and the single methods never deadlock
// among themselves.
//
// A code keeps the family id its first redemption set in its record: the
// transaction that consumes it writes the record again with that id, so
// that a replay, through RedeemCode or ConsumeCode, returns it; a replay
// waits for that transaction (the code's row is locked until it commits).

var _ storage.GrantStore = (*Store)(nil)

// redeemCheckedHook, when set by a test, runs inside RedeemCode's
// transaction once the code's session was found not ended.
var redeemCheckedHook func()

// errProofSeen is the answer to a grant whose proof was recorded before.
func (s *Store) errProofSeen() error {
	return fmt.Errorf("%s: proof: %w", s.d.name, storage.ErrSeen)
}

// markTx records m in tx as MarkSeen does, at now (the store's clock):
// fresh reports whether it was not recorded before, wrote whether a row
// was written (a security write: the epoch ticks with it). A mark without
// an ID records nothing and is fresh.
func (s *Store) markTx(ctx context.Context, tx *sql.Tx, m storage.Mark, now time.Time) (fresh, wrote bool, err error) {
	if m.ID == "" {
		return true, false, nil
	}
	if !now.Before(m.Until) {
		// Nothing to remember; only whether it is still recorded.
		seen, err := s.seenAt(ctx, tx, m.Namespace, m.ID, now)
		return !seen, false, err
	}
	var one int
	err = tx.QueryRowContext(ctx, markSeenSQL, m.Namespace, m.ID, ns(m.Until), ns(now)).Scan(&one)
	switch {
	case noRows(err):
		return false, false, nil
	case err != nil:
		return false, false, err
	}
	return true, true, nil
}

// RedeemCode records the proof, consumes the code, sets its family id,
// checks its session and starts its family in one transaction; see
// storage.GrantStore. The code is consumed and its family started as
// ConsumeCode and CreateRefresh do (on the store's clock; a code from
// before a loss of state is consumed and not found); a family whose id is
// taken by a live family or a tombstone is not started.
func (s *Store) RedeemCode(ctx context.Context, code string, r storage.Redemption) (storage.Redeemed, error) {
	if r.RefreshToken != "" {
		if id, ok := familyOf(r.RefreshToken); !ok || id != r.FamilyID {
			return storage.Redeemed{}, errWrongFamily
		}
	}
	hash := storage.Hash(code)
	var (
		seen   bool
		out    storage.Redeemed
		result error // ConsumeCode's answer: ErrNotFound, ErrAlreadyUsed, a corrupt record
	)
	err := s.write(ctx, "redeem code", func(tx *sql.Tx) (bool, error) {
		seen, out, result = false, storage.Redeemed{}, nil
		now := s.now()
		fresh, marked, err := s.markTx(ctx, tx, r.Proof, now)
		switch {
		case err != nil:
			return false, err
		case !fresh:
			seen = true
			return false, nil // nothing else done: nothing to tick
		}
		var data []byte
		var used int64
		err = tx.QueryRowContext(ctx, consumeCodeSQL, hash, ns(now)).Scan(&data, &used)
		switch {
		case noRows(err):
			// Unknown or expired. The proof, if any, was recorded.
			result = s.notFound("code")
			return marked, nil
		case err != nil:
			return false, err
		}
		c, err := s.consumed(data, used)
		if err != nil {
			out.Code, result = c, err
			return true, nil // counted, as ConsumeCode counts it
		}
		c.FamilyID = r.FamilyID
		rec, err := encode(c)
		if err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE codes SET data = $2 WHERE hash = $1`, hash, rec); err != nil {
			return false, err
		}
		out.Code = c
		if sid := c.Grant.SessionID; sid != "" {
			// Held until the commit: a logout's EndSessions waits for it,
			// then sees the family started here (see dialect.lockSession).
			if s.d.lockSession != nil {
				if err := s.d.lockSession(ctx, tx, sid, false); err != nil {
					return false, err
				}
			}
			ended, err := s.seenAt(ctx, tx, r.EndedSessions, sid, now)
			if err != nil {
				return false, err
			}
			if ended {
				out.SessionEnded = true
				return true, nil
			}
			if redeemCheckedHook != nil {
				redeemCheckedHook()
			}
		}
		absolute, ok := r.StartsFamily(c.Grant)
		if !ok {
			return true, nil
		}
		fam := r.NewFamily(c.Grant, absolute)
		g, err := encode(fam.Grant)
		if err != nil {
			return false, err
		}
		n, err := affected(tx.ExecContext(ctx, createFamilySQL, createFamilyArgs(fam, g, r.RefreshToken, now)...))
		if err != nil {
			return false, err
		}
		if n == 1 {
			// Otherwise a live family or a tombstone has its id (a replay
			// revoked it first): none is started.
			out.Family = &fam
		}
		return true, nil
	})
	switch {
	case err != nil:
		return storage.Redeemed{}, err
	case seen:
		return storage.Redeemed{}, s.errProofSeen()
	case result != nil && errors.Is(result, storage.ErrAlreadyUsed):
		if s.lost(out.Code.Created) { // the tick may have found a rollback
			return storage.Redeemed{}, s.notFound("code from before storage lost state")
		}
		return storage.Redeemed{Code: out.Code}, result
	case result != nil:
		return storage.Redeemed{}, result
	}
	if s.lost(out.Code.Created) {
		// The tick found a rollback: the code is from before it, and the
		// family started for it (no one holds its token) is revoked.
		if out.Family != nil {
			if err := s.RevokeFamily(ctx, out.Family.ID, out.Family.AbsoluteExpiry); err != nil {
				return storage.Redeemed{}, err
			}
		}
		return storage.Redeemed{}, s.notFound("code from before storage lost state")
	}
	return out, nil
}

// RefreshGrant records the proof, then checks and rotates the token in one
// transaction; see storage.GrantStore. The token is answered as
// RotateRefresh answers it after its first statement found it not current
// (with the family's row locked), and a current token whose family meets
// r's expectations is rotated there.
func (s *Store) RefreshGrant(ctx context.Context, r storage.Rotation) (storage.RefreshFamily, []byte, error) {
	id, ok := familyOf(r.Old)
	if nid, nok := familyOf(r.Next); ok && (!nok || nid != id) {
		return storage.RefreshFamily{}, nil, errWrongFamily
	}
	if !ok && r.Proof.ID == "" {
		return storage.RefreshFamily{}, nil, s.notFound("refresh token")
	}
	oldHash, nextHash := storage.Hash(r.Old), storage.Hash(r.Next)
	var (
		seen   bool
		out    int
		fam    storage.RefreshFamily
		sealed []byte
	)
	err := s.write(ctx, "refresh grant", func(tx *sql.Tx) (bool, error) {
		seen, out, fam, sealed = false, rotNotFound, storage.RefreshFamily{}, nil
		fresh, marked, err := s.markTx(ctx, tx, r.Proof, s.now())
		switch {
		case err != nil:
			return false, err
		case !fresh:
			seen = true
			return false, nil // nothing else done: nothing to tick
		}
		if !ok {
			return marked, nil // a malformed token: only the proof recorded
		}
		var changed bool
		out, fam, sealed, changed, err = s.rotateLocked(ctx, tx, id, oldHash, nextHash, r.Now, r.Idle, r.Retry, r.Meets)
		return marked || changed, err
	})
	switch {
	case err != nil:
		return storage.RefreshFamily{}, nil, err
	case seen:
		return storage.RefreshFamily{}, nil, s.errProofSeen()
	case !ok:
		return storage.RefreshFamily{}, nil, s.notFound("refresh token")
	}
	return s.rotation(id, out, fam, sealed)
}
