package config

import "slices"

// validateWorkloads checks the workload issuers' ids and references. Their
// config blocks are checked by Workload.Decode when the broker compiles the
// configuration.
func validateWorkloads(c *Config, ps *problems) {
	ids := make(map[string]int)
	for i, w := range c.Workloads {
		p := index("workloads", i)
		switch {
		case w.ID == "":
			ps.Add(p+".id", "required")
		case !connectorIDRe.MatchString(w.ID):
			ps.Add(p+".id", "must match [a-z0-9][a-z0-9_-]{0,62}, not %q", w.ID)
		default:
			if first, dup := ids[w.ID]; dup {
				ps.Add(p+".id", "duplicate of workloads[%d].id", first)
			} else {
				ids[w.ID] = i
			}
		}
		if w.Mapping != "" {
			if _, ok := c.Mappings[w.Mapping]; !ok {
				ps.Add(p+".mapping", "no mapping %q under mappings", w.Mapping)
			}
		}
	}
	for i, cl := range c.Clients {
		for j, id := range cl.Workloads {
			if _, ok := ids[id]; !ok {
				ps.Add(index(index("clients", i)+".workloads", j), "no workload %q", id)
			}
		}
		if len(cl.Workloads) > 0 && !slices.Contains(cl.GrantTypes, GrantTokenExchange) {
			ps.Add(index("clients", i)+".workloads", "needs grant type %s in grant_types", GrantTokenExchange)
		}
	}
}
