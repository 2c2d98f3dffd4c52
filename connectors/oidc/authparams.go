package oidc

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/fedbroker/fedbroker/problem"
)

// reservedAuthParams are the authorization request parameters the
// connector sets itself: auth_params may not override them (compared
// case-insensitively, since some servers do).
var reservedAuthParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "response_mode", "request", "request_uri",
}

// ownOptionParams have an option of their own, which auth_params must not
// contradict.
var ownOptionParams = []string{"prompt", "domain_hint", "acr_values"}

// secretParams must never travel through the browser.
var secretParams = []string{"client_secret", "client_assertion", "client_assertion_type", "code_verifier", "refresh_token"}

// promptValues are the prompt values of OpenID Connect Core §3.1.2.1.
var promptValues = []string{"none", "login", "consent", "select_account"}

// validateAuthParams checks prompt, domain_hint, acr_values and auth_params.
func (c *Config) validateAuthParams() []problem.Problem {
	var errs problem.List
	if c.Prompt != nil {
		if err := checkPrompt(*c.Prompt); err != nil {
			errs.Add("prompt", "%v", err)
		}
	}
	if c.DomainHint != "" && (containsSpace(c.DomainHint) || hasControl(c.DomainHint)) {
		errs.Add("domain_hint", "must be one domain name without spaces, not %q", c.DomainHint)
	}
	for i, v := range c.ACRValues {
		if v == "" || containsSpace(v) || hasControl(v) {
			errs.Add(fmt.Sprintf("acr_values[%d]", i), "must be one non-empty value without spaces")
		}
	}
	keys := make([]string, 0, len(c.AuthParams))
	for k := range c.AuthParams {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		switch {
		case k == "" || containsSpace(k) || hasControl(k):
			errs.Add("auth_params", "parameter names must be non-empty, without spaces, not %q", k)
		case slices.Contains(reservedAuthParams, lk):
			errs.Add("auth_params."+k, "%s is set by the connector itself and cannot be overridden", lk)
		case slices.Contains(ownOptionParams, lk):
			errs.Add("auth_params."+k, "set %s with the connector's %s option instead", lk, lk)
		case slices.Contains(secretParams, lk):
			errs.Add("auth_params."+k, "%s must never be sent through the browser", lk)
		}
	}
	return errs
}

// checkPrompt accepts "" (no prompt) and space-separated known values,
// each once, none alone.
func checkPrompt(p string) error {
	vals := strings.Fields(p)
	for i, v := range vals {
		if !slices.Contains(promptValues, v) {
			return fmt.Errorf("must be space-separated values of %s, not %q", strings.Join(promptValues, ", "), v)
		}
		if slices.Contains(vals[:i], v) {
			return fmt.Errorf("names %s twice", v)
		}
	}
	if slices.Contains(vals, "none") && len(vals) > 1 {
		return fmt.Errorf("none cannot be combined with other values")
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// authParams are the parameters LoginURL adds to every authorization
// request: the extension's, then the configured ones, then prompt. With
// askOffline (the offline_access scope is requested) and no prompt set by
// the operator or the extension, prompt=consent is sent: OpenID Connect
// Core §11 requires it, and a strict provider otherwise ignores
// offline_access and issues no refresh token.
func authParams(cfg Config, ext Extension, askOffline bool) url.Values {
	v := url.Values{}
	for k, vs := range ext.AuthParams {
		v[k] = slices.Clone(vs)
	}
	for k, val := range cfg.AuthParams {
		v.Set(k, val)
	}
	if cfg.DomainHint != "" {
		v.Set("domain_hint", cfg.DomainHint)
	}
	if len(cfg.ACRValues) > 0 {
		v.Set("acr_values", strings.Join(cfg.ACRValues, " "))
	}
	switch {
	case cfg.Prompt != nil && strings.TrimSpace(*cfg.Prompt) == "":
		v.Del("prompt")
	case cfg.Prompt != nil:
		v.Set("prompt", strings.Join(strings.Fields(*cfg.Prompt), " "))
	case askOffline && !ext.NoConsentPrompt && !v.Has("prompt"):
		v.Set("prompt", "consent")
	}
	return v
}
