package mapping

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// subjectDomain separates DefaultSubject hashes from any other use of
// SHA-256 over the same inputs.
const subjectDomain = "fedbroker-subject-v1"

// DefaultSubject returns the stable, opaque internal subject of one
// upstream account: base64url (no padding) of SHA-256 over a domain tag and
// the length-prefixed connector id and upstream subject. Distinct pairs
// never share an encoding, so ("ab","c") and ("a","bc") differ. The value
// reveals neither input, and so never contains an email address.
func DefaultSubject(connectorID, upstreamSubject string) string {
	var buf [256]byte
	in := buf[:0]
	for _, s := range [...]string{subjectDomain, connectorID, upstreamSubject} {
		in = binary.BigEndian.AppendUint64(in, uint64(len(s)))
		in = append(in, s...)
	}
	sum := sha256.Sum256(in)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
