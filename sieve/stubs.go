package sieve

type mimeOpts struct{}
type mimeIter struct{}

func (c *compiler) mimeTag(a *argp, t arg, ms *matchSpec, fl stdFlags) bool { return false }
func (r *run) mimeExists(m *mimeOpts, names []string) (bool, error) { return false, nil }
func (r *run) mimeHeaderTest(t *headerTest, names []string) (bool, error) { return false, nil }
func (r *run) mimeAddressTest(t *addressTest, names []string) (bool, error) { return false, nil }
type mimePart struct{}
func composeOutgoing(s *suiteRunner, a Action) *sentMsg { return nil }
func registerMore() {}
