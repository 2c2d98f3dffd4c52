package workbench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fedbroker/fedbroker/broker/runtime"
)

// MaxInputBytes bounds pasted or uploaded upstream data.
const MaxInputBytes = 1 << 20

// Forms of upstream data ParseInput reads.
const (
	FormClaims     = "claims"          // a JSON object of claims
	FormSample     = "sample"          // {"connector": ..., "claims": {...}, ...}
	FormAttributes = "saml-attributes" // [{"name": ..., "values": [...]}]
	FormAssertion  = "saml-assertion"  // <saml:Assertion> or <samlp:Response>
)

// Attribute is one SAML attribute in the list form.
type Attribute struct {
	Name   string `json:"name"`
	Values []any  `json:"values"`
}

// ParseInput reads upstream data as pasted or uploaded in the workbench:
//
//   - a JSON object of upstream claims, as the connector receives them;
//   - the object form of `fedbroker mapping test` ({"connector": ID,
//     "claims": {...}, "sources": {...}, "upstream_sub": ...});
//   - a JSON list of SAML attributes, [{"name": N, "values": [...]}]
//     (values of attributes sharing a name are merged);
//   - the XML of a SAML assertion (or a Response holding one, not
//     encrypted): its NameID and the attributes of its AttributeStatement.
//     No signature is checked and no DTD is read: a DOCTYPE is refused.
//
// SAML data becomes claims the way the SAML connector makes them: every
// attribute by its Name as a list of strings, plus "nameid" and
// "nameid_format" (the upstream subject defaults to the NameID). form
// names what was read.
func ParseInput(text string) (in runtime.MappingInput, form string, err error) {
	if len(text) > MaxInputBytes {
		return in, "", fmt.Errorf("the upstream data is longer than %d KiB", MaxInputBytes>>10)
	}
	t := strings.TrimSpace(strings.TrimPrefix(text, "\ufeff"))
	switch {
	case t == "":
		return in, "", errors.New("no upstream data: paste claims (a JSON object), SAML attributes or a SAML assertion")
	case strings.HasPrefix(t, "<"):
		in, err = parseAssertion(t)
		return in, FormAssertion, err
	case strings.HasPrefix(t, "["):
		var attrs []Attribute
		dec := json.NewDecoder(strings.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&attrs); err != nil {
			return in, "", fmt.Errorf(`SAML attributes: want [{"name": "...", "values": ["..."]}]: %v`, jsonErr(err, t))
		}
		in.Claims = map[string]any{}
		for i, a := range attrs {
			if a.Name == "" {
				return in, "", fmt.Errorf("SAML attributes: attribute %d has no name", i)
			}
			vals, _ := in.Claims[a.Name].([]any)
			for _, v := range a.Values {
				if v == nil {
					continue
				}
				s, ok := v.(string)
				if !ok {
					return in, "", fmt.Errorf("SAML attributes: %s: SAML values are strings, not %v", a.Name, v)
				}
				vals = append(vals, s)
			}
			if vals == nil {
				vals = []any{}
			}
			in.Claims[a.Name] = vals
		}
		if _, ok := in.Claims["nameid"]; ok {
			if v, _ := in.Claims["nameid"].([]any); len(v) == 1 {
				in.Claims["nameid"] = v[0]
			}
		}
		if s, ok := in.Claims["nameid"].(string); ok {
			in.UpstreamSubject = s
		}
		return in, FormAttributes, nil
	case strings.HasPrefix(t, "{"):
		var probe map[string]json.RawMessage
		if err := json.Unmarshal([]byte(t), &probe); err != nil {
			return in, "", fmt.Errorf("not JSON: %v", jsonErr(err, t))
		}
		if _, ok := probe["claims"]; ok {
			dec := json.NewDecoder(strings.NewReader(t))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				return in, "", fmt.Errorf("sample: %v", jsonErr(err, t))
			}
			if in.Claims == nil {
				in.Claims = map[string]any{}
			}
			return in, FormSample, nil
		}
		if err := json.Unmarshal([]byte(t), &in.Claims); err != nil {
			return in, "", fmt.Errorf("claims: %v", jsonErr(err, t))
		}
		return in, FormClaims, nil
	}
	return in, "", errors.New("upstream data must be a JSON object of claims, a JSON list of SAML attributes or a SAML assertion's XML")
}

// jsonErr adds the line and column to a JSON syntax error.
func jsonErr(err error, text string) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(text, int(se.Offset))
		return fmt.Sprintf("line %d, column %d: %v", line, col, err)
	}
	return err.Error()
}

func lineCol(text string, off int) (int, int) {
	off = min(max(off, 0), len(text))
	before := text[:off]
	line := strings.Count(before, "\n") + 1
	col := len([]rune(before[strings.LastIndexByte(before, '\n')+1:]))
	return line, max(col, 1)
}

// parseAssertion reads the NameID and attributes of the first assertion in
// a SAML XML document (the document's root may be the Assertion or a
// Response around it).
func parseAssertion(text string) (runtime.MappingInput, error) {
	in := runtime.MappingInput{Claims: map[string]any{}}
	if strings.Contains(text, "<!DOCTYPE") || strings.Contains(text, "<!ENTITY") {
		return in, errors.New("SAML assertion: a DOCTYPE is not accepted")
	}
	dec := xml.NewDecoder(strings.NewReader(text))
	dec.Strict = true
	dec.Entity = nil // the predefined entities only
	var (
		depth, inAssertion, inStatement int
		attrName                        string
		inAttr, sawAssertion, sawNameID bool
		inValue, inNameID               bool
		nameID, format                  string
		value                           bytes.Buffer
		vals                            []any
	)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return in, fmt.Errorf("SAML assertion: not XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return in, errors.New("SAML assertion: a DOCTYPE or other directive is not accepted")
		case xml.StartElement:
			depth++
			switch t.Name.Local {
			case "EncryptedAssertion":
				return in, errors.New("SAML assertion: the assertion is encrypted; paste the decrypted Assertion")
			case "Assertion":
				if sawAssertion {
					return in, errors.New("SAML assertion: more than one assertion; paste one")
				}
				sawAssertion, inAssertion = true, depth
			case "NameID":
				if inAssertion > 0 && !sawNameID && inStatement == 0 {
					sawNameID, inNameID = true, true
					value.Reset()
					format = attr(t, "Format", "")
				}
			case "AttributeStatement":
				if inAssertion > 0 {
					inStatement = depth
				}
			case "Attribute":
				if inStatement > 0 {
					inAttr, attrName = true, attr(t, "Name", "")
					vals, _ = in.Claims[attrName].([]any)
				}
			case "AttributeValue":
				if inAttr {
					inValue = true
					value.Reset()
					if attr(t, "nil", "") == "true" {
						inValue = false
					}
				}
			}
		case xml.CharData:
			if inValue || inNameID {
				if value.Len()+len(t) > MaxInputBytes {
					return in, errors.New("SAML assertion: too large")
				}
				value.Write(t)
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "NameID":
				if inNameID {
					nameID = strings.TrimSpace(value.String())
					inNameID = false
				}
			case "AttributeValue":
				if inValue {
					vals = append(vals, value.String())
					inValue = false
				}
			case "Attribute":
				if inAttr {
					if attrName != "" {
						if vals == nil {
							vals = []any{}
						}
						in.Claims[attrName] = vals
					}
					inAttr, vals = false, nil
				}
			case "AttributeStatement":
				if depth == inStatement {
					inStatement = 0
				}
			case "Assertion":
				if depth == inAssertion {
					inAssertion = 0
				}
			}
			depth--
		}
	}
	if !sawAssertion {
		return in, errors.New("SAML assertion: no <Assertion> element")
	}
	// As the SAML connector: the NameID wins over attributes of its name.
	if format == "" {
		format = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
	}
	in.Claims["nameid"], in.Claims["nameid_format"] = nameID, format
	in.UpstreamSubject = nameID
	return in, nil
}

func attr(t xml.StartElement, local, def string) string {
	for _, a := range t.Attr {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return def
}
