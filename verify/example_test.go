package verify_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"

	"github.com/fedbroker/fedbroker/dpop"
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

// A service checking a DPoP-bound token outside HTTP middleware, such as
// a WebSocket upgrade: the token, the proof and the request's method and
// public URL.
func ExampleVerifier_VerifyDPoP() {
	v, err := verify.New(context.Background(), "https://broker.example.com", "orders-api")
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	http.HandleFunc("GET /orders/live", func(w http.ResponseWriter, r *http.Request) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "DPoP ")
		claims, err := v.VerifyDPoP(r.Context(), token, r.Header.Get(dpop.Header), r.Method, "https://orders.example.com/orders/live")
		switch {
		case errors.Is(err, verify.ErrInvalidDPoPProof):
			http.Error(w, "bad proof", http.StatusUnauthorized)
		case err != nil:
			http.Error(w, "bad token", http.StatusUnauthorized)
		default:
			fmt.Fprintf(w, "live orders of %s (key %s)\n", claims.Subject, claims.KeyThumbprint)
		}
	})
}
