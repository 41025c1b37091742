// Package directory defines how dovetail finds users and checks their passwords.
//
// Implementations: directory/static (a passwd-file style users file, the embedded
// default) and directory/ldap (go-ldap with a pool, failover and auth-bind or
// password-attribute modes).
package directory

import (
	"context"
	"errors"
)

// Errors every implementation wraps so callers can classify with errors.Is.
var (
	// ErrNotFound: no such user (maps to permanent failures: 550 5.1.1, REJECT).
	ErrNotFound = errors.New("directory: user not found")
	// ErrInvalidCredentials: the password does not match.
	ErrInvalidCredentials = errors.New("directory: invalid credentials")
	// ErrDisabled: the user exists but is not enabled (status=invalid).
	ErrDisabled = errors.New("directory: user disabled")
	// ErrUnavailable: the backend cannot answer now (LDAP down, timeout). Always temporary.
	ErrUnavailable = errors.New("directory: backend unavailable")
)

// User is what the directory knows about one mail user.
type User struct {
	Login     string              // the canonical login (e.g. LDAP cn / uid)
	Addresses []string            // every address delivered to / sendable as this user
	Home      string              // home directory; the Maildir lives at Home/Maildir
	UID, GID  int                 // owner of delivered files when running as root
	Enabled   bool                // false for status=invalid
	Quota     int64               // bytes, 0 = no limit from the directory
	Attrs     map[string][]string // raw attributes as the backend returned them
}

// Lookup finds users. A disabled user is returned with Enabled=false, not as an error,
// so callers can tell "unknown" (550 5.1.1) from "disabled" (550 5.2.1).
type Lookup interface {
	// LookupLogin finds a user by login name.
	LookupLogin(ctx context.Context, login string) (*User, error)
	// LookupAddress finds the user owning exactly this address; callers that
	// honour +detail try the address as written first, then without the detail
	// (as Postfix's table lookups do).
	LookupAddress(ctx context.Context, addr string) (*User, error)
}

// Authenticator checks a plaintext password. It returns ErrInvalidCredentials,
// ErrNotFound (callers must not reveal the difference), ErrDisabled or ErrUnavailable.
type Authenticator interface {
	Authenticate(ctx context.Context, login, password string) (*User, error)
}

// SecretReader is an optional capability for challenge-response mechanisms
// (CRAM-MD5, SCRAM): it returns the stored password entry ("{SCHEME}data") for a login.
// Backends that cannot read passwords (LDAP auth-bind) do not implement it.
type SecretReader interface {
	StoredPassword(ctx context.Context, login string) (scheme, data string, user *User, err error)
}

// Directory is the whole seam: lookups plus authentication.
type Directory interface {
	Lookup
	Authenticator
	Close() error
}
