package runtime

import (
	"context"
	"errors"

	"github.com/fedbroker/fedbroker/mapping"
)

// MappingInput is a sample sign-in for a dry run of a mapping: the raw
// upstream claims (and fetched sources) a connector would hand the broker.
type MappingInput struct {
	Connector string `json:"connector"`
	// Workload marks Connector as the id of a workload issuer.
	Workload        bool           `json:"workload,omitempty"`
	UpstreamSubject string         `json:"upstream_sub,omitempty"`
	Claims          map[string]any `json:"claims"`
	Sources         map[string]any `json:"sources,omitempty"`
}

// MappingReport is what a mapping decides for one sample: the output of
// `fedbroker mapping test` and of the admin API's dry run. Claims are shown
// as mapped, before scope filtering.
type MappingReport struct {
	Connector   string         `json:"connector"`
	Decision    string         `json:"decision"` // accepted, rejected or error
	Rule        *int           `json:"rule,omitempty"`
	Message     string         `json:"message,omitempty"`
	Error       string         `json:"error,omitempty"`
	Subject     string         `json:"subject,omitempty"`
	LinkKey     string         `json:"link_key,omitempty"`
	IDToken     map[string]any `json:"id_token,omitempty"`
	AccessToken map[string]any `json:"access_token,omitempty"`
	Steps       []mapping.Step `json:"steps,omitempty"`
}

// RunMapping evaluates m on one sample and reports the decision; with
// explain, every step the mapping took.
func RunMapping(ctx context.Context, m *mapping.Mapping, connectorType string, in MappingInput, explain bool) MappingReport {
	rep := MappingReport{Connector: in.Connector}
	sub := in.UpstreamSubject
	if sub == "" {
		sub, _ = in.Claims["sub"].(string)
	}
	input := mapping.Input{ConnectorID: in.Connector, ConnectorType: connectorType, UpstreamSubject: sub, Claims: in.Claims, Sources: in.Sources}
	var (
		res mapping.Result
		err error
	)
	if explain {
		res, rep.Steps, err = m.Explain(ctx, input)
	} else {
		res, err = m.Evaluate(ctx, input)
	}
	var rej *mapping.Rejection
	switch {
	case errors.As(err, &rej):
		rep.Decision, rep.Message = "rejected", rej.Message
		rule := rej.Rule
		rep.Rule = &rule
	case err != nil:
		rep.Decision, rep.Error = "error", err.Error()
	default:
		rep.Decision = "accepted"
		rep.Subject, rep.LinkKey = res.Subject, res.LinkKey
		rep.IDToken, rep.AccessToken = res.IDToken, res.AccessToken
	}
	return rep
}
