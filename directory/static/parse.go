package static

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/config"
)

// The users file is Dovecot's passwd-file format
// (doc: core/config/auth/databases/passwd_file.md):
//
//	user:password:uid:gid:(gecos):home:(shell):extra_fields
//
// Trailing fields may be omitted. extra_fields are space-separated key=value
// pairs. Keys understood here (the rest are kept in User.Attrs):
//
//	status=valid|invalid   invalid disables the user; so do Dovecot's nologin
//	                       and fail, with or without a value (Dovecot's
//	                       boolean fields are true whenever they exist)
//	mail=a@x,b@y           addresses delivered to this user (besides a login with '@')
//	quota=10M              quota in bytes; also userdb_quota_rule=*:bytes=N / *:storage=NK
//	userdb_<key>=value     stored as Attrs[<key>], like Dovecot's userdb extra fields
//	allow_nets=192.0.2.0/24,local  (and allow_real_nets) authd refuses logins from
//	                       other client addresses, as Dovecot does
//
// Lines starting with '#' and blank lines are ignored.

// maxLine bounds one line of the users file.
const maxLine = 64 * 1024

// entry is one parsed line.
type entry struct {
	user     directory.User
	password string // "{SCHEME}data" or a bare value in the default scheme; "" = cannot log in
	line     int
}

// table is an immutable snapshot of a users file.
type table struct {
	byLogin   map[string]*entry // lower-cased login
	byAddress map[string]*entry // lower-cased address
}

// parse reads a users file; every problem is reported with its line.
func parse(name string, data []byte) (*table, error) {
	t := &table{byLogin: map[string]*entry{}, byAddress: map[string]*entry{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var errs []error
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		e, err := parseLine(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, n, err))
			continue
		}
		e.line = n
		key := strings.ToLower(e.user.Login)
		if prev, dup := t.byLogin[key]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: user %q already defined on line %d", name, n, e.user.Login, prev.line))
			continue
		}
		t.byLogin[key] = e
		for _, a := range e.user.Addresses {
			a = strings.ToLower(a)
			if prev, dup := t.byAddress[a]; dup && prev != e {
				errs = append(errs, fmt.Errorf("%s:%d: address %q already belongs to %q (line %d)", name, n, a, prev.user.Login, prev.line))
				continue
			}
			t.byAddress[a] = e
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s:%d: %w (lines are limited to %d bytes)", name, n+1, err, maxLine))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

func parseLine(line string) (*entry, error) {
	// The password may itself contain ':' only in the extra fields part, which is
	// the last field; split into at most 8 fields.
	f := strings.SplitN(line, ":", 8)
	for len(f) < 8 {
		f = append(f, "")
	}
	login := f[0]
	if login == "" {
		return nil, errors.New("empty user name")
	}
	if strings.ContainsAny(login, " \t") {
		return nil, fmt.Errorf("user name %q contains white space", login)
	}
	e := &entry{password: f[1]}
	u := &e.user
	u.Login, u.Home, u.Enabled = login, f[5], true
	u.Attrs = map[string][]string{}
	var err error
	if u.UID, err = optInt(f[2]); err != nil {
		return nil, fmt.Errorf("uid: %w", err)
	}
	if u.GID, err = optInt(f[3]); err != nil {
		return nil, fmt.Errorf("gid: %w", err)
	}
	if strings.Contains(login, "@") {
		u.Addresses = append(u.Addresses, login)
	}
	for _, kv := range strings.Fields(f[7]) {
		k, v, _ := strings.Cut(kv, "=")
		k = strings.ToLower(k)
		switch {
		case k == "status":
			switch strings.ToLower(v) {
			case "valid", "enabled", "active":
			case "invalid", "disabled", "inactive":
				u.Enabled = false
			default:
				return nil, fmt.Errorf("status=%q: want valid or invalid", v)
			}
		case k == "nologin" || k == "fail":
			// Dovecot: a boolean field is true whenever it exists, so
			// "nologin=", "nologin=y" and even "nologin=no" block the user.
			u.Enabled = false
		case k == "mail" || k == "aliases":
			for _, a := range strings.Split(v, ",") {
				if a = strings.TrimSpace(a); a != "" {
					if !strings.Contains(a, "@") {
						return nil, fmt.Errorf("%s=%q: %q is not an address", k, v, a)
					}
					u.Addresses = append(u.Addresses, a)
				}
			}
		case k == "quota":
			q, err := config.ParseSize(v)
			if err != nil || q < 0 {
				return nil, fmt.Errorf("quota=%q: want a size such as 512M", v)
			}
			u.Quota = q
		case k == "userdb_quota_rule":
			if q, ok := quotaRule(v); ok {
				u.Quota = q
			}
		}
		u.Attrs[strings.TrimPrefix(k, "userdb_")] = append(u.Attrs[strings.TrimPrefix(k, "userdb_")], v)
	}
	return e, nil
}

func optInt(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative number", s)
	}
	return n, nil
}

// quotaRule understands Dovecot's "*:bytes=N" and "*:storage=NK" forms.
func quotaRule(v string) (int64, bool) {
	_, rule, ok := strings.Cut(v, ":")
	if !ok {
		return 0, false
	}
	k, n, ok := strings.Cut(rule, "=")
	if !ok {
		return 0, false
	}
	switch k {
	case "bytes":
		q, err := config.ParseSize(n)
		return q, err == nil
	case "storage": // Dovecot: storage is in kilobytes unless a unit is given
		if q, err := strconv.ParseInt(n, 10, 64); err == nil {
			return q * 1024, true
		}
		q, err := config.ParseSize(n)
		return q, err == nil
	}
	return 0, false
}
