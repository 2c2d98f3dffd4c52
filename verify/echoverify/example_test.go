package echoverify_test

import (
	"context"
	"log"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/verify"
	"github.com/fedbroker/fedbroker/verify/echoverify"
)

func ExampleMiddleware() {
	v, err := verify.New(context.Background(), "https://broker.example.com", "orders-api")
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	e := echo.New()
	// Every route of the group needs a valid token with the orders:read
	// scope; handlers check finer rules on the claims.
	api := e.Group("/api", echoverify.Middleware(v, "orders:read"))
	api.GET("/orders", func(c echo.Context) error {
		claims, _ := verify.ClaimsFromContext(c.Request().Context())
		return c.String(http.StatusOK, "orders of "+claims.Subject)
	})
	api.DELETE("/orders/:id", func(c echo.Context) error {
		claims, _ := verify.ClaimsFromContext(c.Request().Context())
		if !claims.HasRole("admin") {
			return c.NoContent(http.StatusForbidden)
		}
		return c.NoContent(http.StatusNoContent)
	})
	log.Fatal(e.Start(":8080"))
}
