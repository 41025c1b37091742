package cli

// Sections holds one config section per component, each owned by its package.
// Add a section here when a package grows a Config (yaml key = package name).
type Sections struct {
}

func defaultSections() Sections {
	return Sections{}
}
