package mapping

// SAML attribute names the default saml mapping reads.
const (
	samlMail         = "urn:oid:0.9.2342.19200300.100.1.3"
	samlEmailAddress = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
	samlGivenName    = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"
	samlSurname      = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"
	samlName         = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	samlDisplayName  = "http://schemas.microsoft.com/identity/claims/displayname"
	samlOIDDisplay   = "urn:oid:2.16.840.1.113730.3.1.241"
	samlOIDGiven     = "urn:oid:2.5.4.42"
	samlOIDSurname   = "urn:oid:2.5.4.4"
	samlGroups       = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
	samlRole         = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
	samlUID          = "urn:oid:0.9.2342.19200300.100.1.1"
)

// samlFirst is an expression giving the first value of the first present
// attribute among names, as an optional.
func samlFirst(names ...string) string {
	e := ""
	for i, n := range names {
		if i > 0 {
			e += ".or("
		}
		e += `claims[?"` + n + `"].optFlatMap(v, v.first())`
	}
	for i := 1; i < len(names); i++ {
		e += ")"
	}
	return e
}

// samlAll is an expression giving the values of every present attribute
// among names, concatenated and de-duplicated, or none when there are none.
func samlAll(names ...string) string {
	e := ""
	for i, n := range names {
		v := `claims[?"` + n + `"].orValue([])`
		if i == 0 {
			e = v
		} else {
			e = `sets.union(` + e + `, ` + v + `)`
		}
	}
	return `cel.bind(vs, ` + e + `, size(vs) == 0 ? optional.none() : optional.of(vs))`
}

// nonEmpty is an expression giving claim name as an optional, empty when
// the claim is absent or "".
func nonEmpty(name string) string {
	return `has(claims.` + name + `) && claims.` + name + ` != "" ? optional.of(claims.` + name + `) : optional.none()`
}

// emailVerifiedTrue emits email_verified when an email is present: true
// only when the upstream claim is the JSON boolean true.
const emailVerifiedTrue = `has(claims.email) ? optional.of(claims.?email_verified.orValue(false) == true) : optional.none()`

// Default returns the default mapping of a connector type: "local",
// "oidc", "google", "azuread", "saml", and a generic OpenID Connect mapping
// for any other type. None declares a link, and every one compiles. The
// subject is always DefaultSubject.
func Default(connectorType string) Spec {
	switch connectorType {
	case "local":
		return Spec{Claims: map[string]ClaimSpec{
			"email":              {Expr: nonEmpty("email")},
			"email_verified":     {Expr: `has(claims.email) && claims.email != "" ? claims.?email_verified : optional.none()`},
			"name":               {Expr: nonEmpty("name")},
			"preferred_username": {Expr: nonEmpty("username")},
			"groups":             {Expr: `claims.?groups`},
		}}
	case "google":
		return Spec{
			Require: []Rule{{
				Expr:    `has(claims.email_verified) && claims.email_verified == true`,
				Message: "Your Google account's email address is not verified.",
			}},
			Claims: map[string]ClaimSpec{
				"email":              {Expr: `claims.?email`},
				"email_verified":     {Expr: emailVerifiedTrue},
				"name":               {Expr: `claims.?name`},
				"preferred_username": {Expr: `claims.?email`},
				"hd":                 {Expr: `claims.?hd`},
				"groups":             {Expr: `sources.?groups.or(claims.?groups)`},
			},
		}
	case "azuread":
		return Spec{Claims: map[string]ClaimSpec{
			"email":              {Expr: `claims.?email.or(claims.?preferred_username)`},
			"name":               {Expr: `claims.?name`},
			"preferred_username": {Expr: `claims.?preferred_username`},
			"roles":              {Expr: `claims.?roles`},
			"groups":             {Expr: `sources.?groups.or(claims.?groups)`},
			"tid":                {Expr: `claims.?tid`},
		}}
	case "saml":
		return Spec{Claims: map[string]ClaimSpec{
			"email": {Expr: samlFirst(samlMail, samlEmailAddress, "email", "mail")},
			"name": {Expr: samlFirst(samlDisplayName, samlOIDDisplay, "displayName") +
				`.or(cel.bind(parts, [` + samlFirst(samlGivenName, samlOIDGiven, "givenName") + `, ` +
				samlFirst(samlSurname, samlOIDSurname, "sn") + `].filter(o, o.hasValue()).map(o, o.value()),` +
				` size(parts) == 0 ? optional.none() : optional.of(parts.join(" "))))` +
				`.or(` + samlFirst(samlName, "name", "cn") + `)`},
			"preferred_username": {Expr: samlFirst(samlUID, "uid", samlName)},
			"groups":             {Expr: samlAll(samlGroups, "groups", "memberOf")},
			"roles":              {Expr: samlAll(samlRole, "roles", "role")},
		}}
	default: // "oidc" and any other type
		return Spec{Claims: map[string]ClaimSpec{
			"email":              {Expr: `claims.?email`},
			"email_verified":     {Expr: emailVerifiedTrue},
			"name":               {Expr: `claims.?name`},
			"preferred_username": {Expr: `claims.?preferred_username`},
			"groups":             {Expr: `claims.?groups`},
		}}
	}
}
