package tokens

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/fedbroker/fedbroker/mapping"
)

// The token encoder writes a token's payload in one pass into a reused
// buffer: the registered claims field by field, then the mapped claims the
// scopes release, in key order. Its output is the JSON that encodeClaims
// gives for the same claims (the registered struct, then
// Releasable(extra) as a map): the same keys in the same order, strings
// escaped as encoding/json escapes them (HTML characters, U+2028/U+2029,
// invalid UTF-8), numbers formatted as encoding/json formats them. A
// value of a type it does not write itself goes through encoding/json.

// payloadPool holds payload buffers between tokens.
var payloadPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// objectWriter appends the members of one JSON object to b.
type objectWriter struct {
	b []byte
	n int // members written
}

func (w *objectWriter) open()  { w.b = append(w.b, '{') }
func (w *objectWriter) close() { w.b = append(w.b, '}') }

func (w *objectWriter) key(name string) {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
	w.b = appendString(w.b, name)
	w.b = append(w.b, ':')
}

func (w *objectWriter) str(name, v string) {
	w.key(name)
	w.b = appendString(w.b, v)
}

// strOmit is str with omitempty.
func (w *objectWriter) strOmit(name, v string) {
	if v != "" {
		w.str(name, v)
	}
}

func (w *objectWriter) int(name string, v int64) {
	w.key(name)
	w.b = strconv.AppendInt(w.b, v, 10)
}

// intOmit is int with omitempty.
func (w *objectWriter) intOmit(name string, v int64) {
	if v != 0 {
		w.int(name, v)
	}
}

// strings writes v as an array (null when nil), as encoding/json does.
func (w *objectWriter) strings(name string, v []string) {
	w.key(name)
	w.b = appendStrings(w.b, v)
}

// extras writes the claims of extra the scopes release (Releasable), in
// key order.
func (w *objectWriter) extras(extra map[string]any, scopes []string) error {
	if len(extra) == 0 {
		return nil
	}
	var arr [32]string
	keys := arr[:0]
	for k := range extra {
		if releasable(k, scopes) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		w.key(k)
		var err error
		if w.b, err = appendValue(w.b, extra[k]); err != nil {
			return fmt.Errorf("tokens: encode claim %q: %w", k, err)
		}
	}
	return nil
}

// releasable reports whether a mapped claim named k is released under
// scopes: never a claim the broker sets itself, and a standard claim only
// with its scope.
func releasable(k string, scopes []string) bool {
	if mapping.IsReservedClaim(k) || k == FamilyClaim {
		return false
	}
	need, ok := scopeClaims[k]
	return !ok || slices.Contains(scopes, need)
}

// appendIDToken appends the payload of an ID token with its registered
// claims c and the mapped claims of extra that scopes release.
func appendIDToken(b []byte, c *idTokenClaims, extra map[string]any, scopes []string) ([]byte, error) {
	w := objectWriter{b: b}
	w.open()
	w.str("iss", c.Issuer)
	w.str("sub", c.Subject)
	w.str("aud", c.Audience)
	w.str("azp", c.AZP)
	w.int("exp", c.Expiry)
	w.int("iat", c.IssuedAt)
	w.intOmit("auth_time", c.AuthTime)
	w.strOmit("nonce", c.Nonce)
	w.strOmit("at_hash", c.AtHash)
	w.strOmit("sid", c.SID)
	if len(c.AMR) > 0 {
		w.strings("amr", c.AMR)
	}
	if err := w.extras(extra, scopes); err != nil {
		return b, err
	}
	w.close()
	return w.b, nil
}

// appendAccessToken appends the payload of an access token with its
// registered claims c (Audience is ignored: aud is audiences, a string
// when there is one) and the mapped claims of extra that scopes release.
func appendAccessToken(b []byte, c *accessTokenClaims, audiences []string, extra map[string]any, scopes []string) ([]byte, error) {
	w := objectWriter{b: b}
	w.open()
	w.str("iss", c.Issuer)
	w.str("sub", c.Subject)
	if len(audiences) == 1 {
		w.str("aud", audiences[0])
	} else {
		w.strings("aud", audiences)
	}
	w.str("client_id", c.ClientID)
	w.int("exp", c.Expiry)
	w.int("iat", c.IssuedAt)
	w.str("jti", c.JTI)
	w.strOmit("scope", c.Scope)
	w.intOmit("auth_time", c.AuthTime)
	w.strOmit("sid", c.SID)
	if len(c.Act) > 0 {
		w.key("act")
		var err error
		if w.b, err = appendValue(w.b, c.Act); err != nil {
			return b, fmt.Errorf("tokens: encode claim act: %w", err)
		}
	}
	w.strOmit(FamilyClaim, c.Family)
	if c.Cnf != nil {
		w.key("cnf")
		cnf := objectWriter{b: w.b}
		cnf.open()
		cnf.str("jkt", c.Cnf.JKT)
		cnf.close()
		w.b = cnf.b
	}
	if err := w.extras(extra, scopes); err != nil {
		return b, err
	}
	w.close()
	return w.b, nil
}

func appendStrings(b []byte, v []string) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// errUnsupportedNumber is NaN or an infinity, which JSON cannot carry.
var errUnsupportedNumber = errors.New("unsupported number")

// appendValue appends v as encoding/json.Marshal writes it: the types
// mapped claims hold (from a mapping or decoded from stored JSON) directly,
// anything else through encoding/json.
func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case float64:
		return appendFloat(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case []string:
		return appendStrings(b, v), nil
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		if v == nil {
			return append(b, "null"...), nil
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, v[k]); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	default:
		more, err := json.Marshal(v)
		if err != nil {
			return b, err
		}
		return append(b, more...), nil
	}
}

// appendFloat formats f as encoding/json does (ES6 number to string).
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, errUnsupportedNumber
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9, as encoding/json writes it.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string escaped as encoding/json escapes
// it by default: ", \ and control characters, the HTML characters <, >
// and &, U+2028 and U+2029; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
