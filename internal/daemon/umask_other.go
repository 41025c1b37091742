//go:build !unix

package daemon

// setUmask is a no-op where there is no umask (unix sockets there are rare,
// and their permissions are not modes).
func setUmask(int) int { return 0 }
