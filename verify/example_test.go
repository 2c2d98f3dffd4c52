package verify_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"

	"github.com/fedbroker/fedbroker/verify"
)

// A service trusting the broker: one Verifier at start-up, middleware on
// the routes.
func Example() {
	v, err := verify.New(context.Background(), "https://broker.example.com", "orders-api")
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /orders", v.Middleware("orders:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "orders of %s\n", claims.Subject)
	})))
	log.Fatal(http.ListenAndServe(":8080", mux))
}

func ExampleVerifier_Verify() {
	v, err := verify.New(context.Background(), "https://broker.example.com", "orders-api",
		verify.WithRequiredScopes("orders:read"))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	var token string // from a message header, a gRPC metadata entry, ...
	claims, err := v.Verify(context.Background(), token)
	var expired *verify.ExpiredError
	switch {
	case errors.As(err, &expired):
		log.Printf("token expired at %s: ask the client to refresh", expired.Expiry)
	case errors.Is(err, verify.ErrInsufficientScope):
		log.Print("valid token without the orders:read scope")
	case err != nil:
		log.Printf("refused: %v", err) // forged, wrong audience, ID token, ...
	default:
		log.Printf("request by %s via client %s", claims.Subject, claims.ClientID)
	}
}
