package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedbroker/fedbroker/broker/config"
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

// CompileMapping compiles the mapping a connector of cfg uses (its named
// mapping, or its type's default) without opening the connector.
func CompileMapping(cfg *config.Config, connectorID string) (*mapping.Mapping, string, error) {
	for _, c := range cfg.Connectors {
		if c.ID == connectorID {
			m, err := compileNamed(cfg, c.Mapping, c.Type, "connectors."+c.ID)
			return m, c.Type, err
		}
	}
	return nil, "", fmt.Errorf("no connector %q in the configuration", connectorID)
}

// CompileWorkloadMapping compiles the mapping of a workload issuer of cfg.
func CompileWorkloadMapping(cfg *config.Config, workloadID string) (*mapping.Mapping, string, error) {
	for _, w := range cfg.Workloads {
		if w.ID == workloadID {
			m, err := compileNamed(cfg, w.Mapping, "workload", "workloads."+w.ID)
			return m, "workload", err
		}
	}
	return nil, "", fmt.Errorf("no workload issuer %q in the configuration", workloadID)
}

// compileNamed compiles mappings[name], or the default mapping of typ when
// name is empty; owner names who uses it, for error paths.
func compileNamed(cfg *config.Config, name, typ, owner string) (*mapping.Mapping, error) {
	spec := mapping.Default(typ)
	path := owner + " (default " + typ + " mapping)"
	if name != "" {
		s, ok := cfg.Mappings[name]
		if !ok {
			return nil, fmt.Errorf("%s names mapping %q, which is not defined", owner, name)
		}
		spec, path = s, "mappings."+name
	}
	m, errs := mapping.Compile(spec, mapping.CompileOptions{})
	if len(errs) > 0 {
		var problems config.Errors
		for _, e := range errs {
			problems = append(problems, config.Problem{Path: path + "." + e.Path, Message: e.Message})
		}
		return nil, problems
	}
	return m, nil
}

// RunMapping evaluates m on one sample and reports the decision.
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
