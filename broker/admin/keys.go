package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/keys"
)

// maxAlgorithmBody bounds the body of POST /admin/keys/algorithm.
const maxAlgorithmBody = 1 << 10

// algorithmRequest is the body of POST /admin/keys/algorithm.
type algorithmRequest struct {
	Algorithm *string `json:"algorithm"`
}

// keysError answers an error of the keys endpoints: a code and a
// description a person can act on.
func keysError(c echo.Context, status int, code, description string, extra ...any) error {
	body := map[string]any{"error": code, "error_description": description}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	return c.JSON(status, body)
}

// readAlgorithm decodes {"algorithm": NAME}: one JSON object, no other
// field. It returns a description of what is wrong, or "".
func readAlgorithm(c echo.Context) (string, string) {
	const want = `body must be JSON: {"algorithm": "RS256"}`
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, maxAlgorithmBody))
	dec.DisallowUnknownFields()
	var in algorithmRequest
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return "", fmt.Sprintf("body larger than %d bytes; %s", maxAlgorithmBody, want)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &syntax), errors.As(err, &typ):
			return "", want
		}
		return "", want + ": " + err.Error() // an unknown field, named
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", "body must be one JSON object: " + `{"algorithm": "RS256"}`
	}
	if in.Algorithm == nil || *in.Algorithm == "" {
		return "", `"algorithm" is required: one of ` + strings.Join(keys.SupportedAlgorithms(), ", ")
	}
	return *in.Algorithm, ""
}

// handleSetAlgorithm changes the fleet's default signing algorithm,
// recorded in the shared key set: 200 changed or unchanged, 409
// unknown_algorithm when the set has no key for it (add it to
// signing.algorithms everywhere first), 400 invalid_request for a bad body
// or an algorithm the broker cannot sign with. Replicas whose
// signing.algorithm is not the new default stop signing at their next
// sync; the audit line records what happened.
func (a *api) handleSetAlgorithm(c echo.Context) error {
	alg, bad := readAlgorithm(c)
	if bad != "" {
		return keysError(c, http.StatusBadRequest, "invalid_request", bad)
	}
	res, err := a.deps.Keys.SetAlgorithm(c.Request().Context(), alg)
	switch {
	case errors.Is(err, keys.ErrUnsupportedAlgorithm):
		return keysError(c, http.StatusBadRequest, "invalid_request",
			fmt.Sprintf("algorithm %q is not supported: want one of %s", alg, strings.Join(keys.SupportedAlgorithms(), ", ")))
	case errors.Is(err, keys.ErrUnknownAlgorithm):
		have := a.deps.Keys.PublishedAlgorithms()
		a.deps.Audit.Event("admin_keys_algorithm", "outcome", "refused", "algorithm", alg, "reason", "unknown_algorithm")
		return keysError(c, http.StatusConflict, "unknown_algorithm", fmt.Sprintf(
			"the shared key set has no %s key (it has %s): add %s to signing.algorithms on every replica, roll them out, then ask again",
			alg, strings.Join(have, ", "), alg), "algorithm", alg, "algorithms", have)
	case errors.Is(err, keys.ErrStatic):
		return keysError(c, http.StatusConflict, "static_keys",
			"signing keys are static (signing.static_keys): there is no shared key set; set signing.algorithm on every replica")
	case errors.Is(err, keys.ErrBusy):
		c.Response().Header().Set("Retry-After", "5")
		return keysError(c, http.StatusServiceUnavailable, "temporarily_unavailable", "the key set is being changed by another replica; try again")
	case errors.Is(err, keys.ErrNotReady):
		a.deps.Logger.Error("admin: signing algorithm change refused", "err", err)
		return keysError(c, http.StatusServiceUnavailable, "temporarily_unavailable",
			"this replica cannot use the signing keys; see its log, or ask another replica")
	case err != nil:
		return err
	}
	status := "unchanged"
	if res.Changed {
		status = "changed"
	}
	a.deps.Audit.Event("admin_keys_algorithm", "outcome", status, "algorithm", res.Algorithm, "previous", res.Previous, "version", res.Generation)
	body := map[string]any{"status": status, "algorithm": res.Algorithm, "version": res.Generation}
	if res.Changed {
		body["previous"] = res.Previous
	}
	return c.JSON(http.StatusOK, body)
}
