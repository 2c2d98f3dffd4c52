package oauth

import "strings"

// PageCSP is the Content-Security-Policy of every response: nothing but
// the broker's own styles, images and scripts, never framed. frameOrigins,
// when given, may be loaded in iframes (the signed-out page's front-channel
// logout); otherwise frames fall back to default-src 'none'.
func PageCSP(frameOrigins ...string) string {
	frame := ""
	if len(frameOrigins) > 0 {
		frame = "frame-src " + strings.Join(frameOrigins, " ") + "; "
	}
	return "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; " + frame + "frame-ancestors 'none'; base-uri 'none'"
}
