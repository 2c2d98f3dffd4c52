// Package echoverify guards echo routes with the broker's access tokens.
//
// It is the echo form of verify.Verifier.Middleware, in a package of its
// own so that services importing verify do not depend on echo:
//
//	v, err := verify.New(ctx, "https://broker.example.com", "orders-api")
//	...
//	api := e.Group("/api", echoverify.Middleware(v, "orders:read"))
//
// Handlers read the verified claims with verify.ClaimsFromContext on
// c.Request().Context().
package echoverify

import (
	"net/http"

	"github.com/fedbroker/fedbroker/verify"
	"github.com/labstack/echo/v4"
)

// Middleware returns echo middleware that lets a request through only with
// a valid access token carrying every scope in required (on top of
// verify.WithRequiredScopes): a bearer token, or a DPoP-bound token with
// its DPoP proof (RFC 9449). It makes the same checks and gives the same
// RFC 6750 and RFC 9449 answers as v.Middleware(required...), and puts the
// verified *verify.Claims in c.Request().Context() for
// verify.ClaimsFromContext.
//
// A refusal is written directly to the response, not returned as an error,
// so the application's HTTPErrorHandler cannot drop the WWW-Authenticate
// header. Errors of the handlers behind the middleware are returned as they
// are.
func Middleware(v *verify.Verifier, required ...string) echo.MiddlewareFunc {
	guard := v.Middleware(required...)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			var err error
			guard(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				c.SetRequest(r)
				err = next(c)
			})).ServeHTTP(c.Response(), c.Request())
			return err
		}
	}
}
