package observe

import "runtime/debug"

// Version is the build's module version, "(devel)" for a build from a
// work tree.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
