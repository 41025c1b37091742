package sieve

type mimeOpts struct{}
type mimeIter struct{}
type includeRef struct{}
type includeState struct{ seen map[string]*Script }

func (c *compiler) mimeTag(a *argp, t arg, ms *matchSpec, fl stdFlags) bool { return false }
func (r *run) mimeExists(m *mimeOpts, names []string) (bool, error) { return false, nil }
func (r *run) mimeHeaderTest(t *headerTest, names []string) (bool, error) { return false, nil }
func (r *run) mimeAddressTest(t *addressTest, names []string) (bool, error) { return false, nil }
func (r *run) environment(name string) (string, bool) { return "", false }
func registerExtensions() {}
type mimePart struct{}
type flagsArg struct{ list []strv }
func (r *run) actionFlags(f *flagsArg) []string { return nil }
func composeOutgoing(s *suiteRunner, a Action) *sentMsg { return nil }
