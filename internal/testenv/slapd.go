package testenv

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Fixed names of the test directory.
const (
	LDAPBaseDN        = "dc=example,dc=com"
	LDAPPeopleDN      = "ou=people,dc=example,dc=com"
	LDAPAdminDN       = "cn=admin,dc=example,dc=com"
	LDAPAdminPassword = "adminsecret"
)

// SlapdServer is a private OpenLDAP slapd (MDB backend) on 127.0.0.1.
type SlapdServer struct {
	URL           string // ldap://127.0.0.1:PORT
	LDAPIURL      string // ldapi://%2Ftmp%2F...%2Fldapi (SASL EXTERNAL as root = manage)
	BaseDN        string // dc=example,dc=com
	PeopleDN      string // ou=people,dc=example,dc=com
	AdminDN       string // cn=admin,dc=example,dc=com (rootDN)
	AdminPassword string // adminsecret
	Port          int
	Dir           string // temp dir: slapd.d/, db/, slapd.log, home/
	HomeDir       string // Dir/home: default parent of users' home directories

	mu sync.Mutex
	p  *proc
}

// LDAPUser is an entry under ou=people: objectClasses inetOrgPerson, posixAccount,
// mailAccountStatus; DN cn=<CN>,ou=people,dc=example,dc=com.
type LDAPUser struct {
	CN        string
	UID       string   // default CN
	Mail      string   // first mail value
	ExtraMail []string // further mail values (aliases)
	// Password is stored as given when it starts with "{" ("{SSHA}...", "{CRYPT}..."),
	// otherwise it is hashed to {SSHA}. Empty: no userPassword.
	Password  string
	Status    string // valid|invalid; default valid
	UIDNumber int    // default MailUID
	GIDNumber int    // default MailGID
	Home      string // default <HomeDir>/<CN>, created owned by UIDNumber/GIDNumber
}

// SeedUsers are present in the shared slapd from the start (homes under HomeDir).
var SeedUsers = []LDAPUser{
	{CN: "alice", Mail: "alice@example.com", Password: "alicepw", Status: "valid"},
	{CN: "bob", Mail: "bob@example.com", Password: "bobpw", Status: "invalid"},
	{CN: "carol", Mail: "carol@example.com", ExtraMail: []string{"c.smith@example.com"}, Password: "carolpw", Status: "valid"},
}

var sharedSlapd shared[SlapdServer]

// Slapd returns the binary-wide shared slapd, started on first use and stopped by
// Main. It holds the SeedUsers. Tests that change entries should use their own
// users, or restore what they changed.
func Slapd(t testing.TB) *SlapdServer {
	t.Helper()
	Need(t, "slapd", "slapadd")
	needMain(t)
	return sharedSlapd.get(t, "slapd", startSlapd,
		func(s *SlapdServer) { s.stop(); removeDir(nil, s.Dir) },
		func(s *SlapdServer) string { return s.URL + " (dir " + s.Dir + ")" })
}

func startSlapd() (s *SlapdServer, err error) {
	dir, err := tempDir("slapd")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			removeDir(nil, dir)
		}
	}()
	s = &SlapdServer{
		BaseDN: LDAPBaseDN, PeopleDN: LDAPPeopleDN, AdminDN: LDAPAdminDN, AdminPassword: LDAPAdminPassword,
		Dir: dir, HomeDir: filepath.Join(dir, "home"),
	}
	s.LDAPIURL = "ldapi://" + urlEscapeAll(filepath.Join(dir, "ldapi"))
	for _, d := range []string{"slapd.d", "db"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(s.HomeDir, 0o755); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "mailstatus.ldif"), slapdSchema, 0o644); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(slapdConfig, dir, s.BaseDN, s.AdminDN, HashSSHA(s.AdminPassword))
	if err := writeFile(filepath.Join(dir, "config.ldif"), cfg, 0o600); err != nil {
		return nil, err
	}
	slapadd, err := lookBin("slapadd")
	if err != nil {
		return nil, err
	}
	if _, err := runCmd(slapadd, "-n", "0", "-F", filepath.Join(dir, "slapd.d"), "-l", filepath.Join(dir, "config.ldif")); err != nil {
		return nil, fmt.Errorf("building cn=config: %w", err)
	}
	var data strings.Builder
	fmt.Fprintf(&data, "dn: %s\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n", s.BaseDN)
	fmt.Fprintf(&data, "dn: %s\nobjectClass: organizationalUnit\nou: people\n\n", s.PeopleDN)
	for _, u := range SeedUsers {
		u, err := s.fillUser(u)
		if err != nil {
			return nil, err
		}
		data.WriteString(userLDIF(s.UserDN(u.CN), u))
		data.WriteString("\n")
	}
	if err := writeFile(filepath.Join(dir, "data.ldif"), data.String(), 0o600); err != nil {
		return nil, err
	}
	if _, err := runCmd(slapadd, "-q", "-n", "1", "-F", filepath.Join(dir, "slapd.d"), "-l", filepath.Join(dir, "data.ldif")); err != nil {
		return nil, fmt.Errorf("loading seed entries: %w", err)
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		s.URL = "ldap://127.0.0.1:" + strconv.Itoa(port)
		err = s.start()
		if err == nil {
			return s, nil
		}
		if attempt < 5 && addrInUse(err.Error()) {
			continue
		}
		return nil, err
	}
}

// start runs slapd on s.Port with the existing config and data, and waits until the
// rootDSE answers.
func (s *SlapdServer) start() error {
	path, err := lookBin("slapd")
	if err != nil {
		return err
	}
	logPath := filepath.Join(s.Dir, "slapd.log")
	// -d keeps slapd in the foreground (our child); stats logs every operation.
	p, err := startProc("slapd", logPath, path, "-F", filepath.Join(s.Dir, "slapd.d"),
		"-h", s.URL+"/ "+s.LDAPIURL, "-d", "stats")
	if err != nil {
		return err
	}
	if err := p.waitReady(func() error {
		if err := p.listenReady(s.Port)(); err != nil {
			return err
		}
		return s.ping()
	}); err != nil {
		p.stop()
		return err
	}
	s.p = p
	return nil
}

// ping searches the rootDSE anonymously.
func (s *SlapdServer) ping() error {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(2 * time.Second)
	_, err = c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"namingContexts"}, nil))
	return err
}

func (s *SlapdServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.stop()
}

// Stop stops slapd (for outage tests); the data dir and port are kept for Start.
// The shared slapd is started again when the test ends if the test did not.
func (s *SlapdServer) Stop(t testing.TB) {
	t.Helper()
	s.stop()
	t.Cleanup(func() { s.Start(t) })
}

// Start starts a stopped slapd again on the same port with the same data. No-op when
// it is running.
func (s *SlapdServer) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil && !s.p.exited() {
		return
	}
	if err := s.start(); err != nil {
		t.Fatalf("testenv: restarting slapd on %s: %v", s.URL, err)
	}
}

// Running reports whether slapd is up (not stopped by Stop).
func (s *SlapdServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p != nil && !s.p.exited()
}

// UserDN returns cn=<cn>,ou=people,dc=example,dc=com.
func (s *SlapdServer) UserDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + s.PeopleDN }

// Conn returns a connection bound as the rootDN, closed when the test ends.
func (s *SlapdServer) Conn(t testing.TB) *ldap.Conn {
	t.Helper()
	c, err := s.adminConn()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *SlapdServer) adminConn() (*ldap.Conn, error) {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w\nslapd log:\n%s", s.URL, err, tail(filepath.Join(s.Dir, "slapd.log"), 20))
	}
	c.SetTimeout(5 * time.Second)
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		c.Close()
		return nil, fmt.Errorf("bind %s: %w", s.AdminDN, err)
	}
	return c, nil
}

// fillUser applies the defaults and creates the home directory when it lies under HomeDir.
func (s *SlapdServer) fillUser(u LDAPUser) (LDAPUser, error) {
	if u.CN == "" {
		return u, errors.New("LDAPUser.CN is empty")
	}
	if u.UID == "" {
		u.UID = u.CN
	}
	if u.Status == "" {
		u.Status = "valid"
	}
	if u.UIDNumber == 0 {
		u.UIDNumber = MailUID
	}
	if u.GIDNumber == 0 {
		u.GIDNumber = MailGID
	}
	if u.Home == "" {
		u.Home = filepath.Join(s.HomeDir, u.CN)
	}
	if u.Password != "" && !strings.HasPrefix(u.Password, "{") {
		u.Password = HashSSHA(u.Password)
	}
	if strings.HasPrefix(u.Home, s.HomeDir+"/") {
		if _, err := os.Stat(u.Home); errors.Is(err, os.ErrNotExist) {
			if err := mkdirOwned(u.Home, u.UIDNumber, u.GIDNumber, 0o700); err != nil {
				return u, err
			}
		}
	}
	return u, nil
}

func userAttrs(u LDAPUser) [][2]string {
	a := [][2]string{
		{"objectClass", "inetOrgPerson"}, {"objectClass", "posixAccount"}, {"objectClass", "mailAccountStatus"},
		{"cn", u.CN}, {"sn", u.CN}, {"uid", u.UID},
		{"uidNumber", strconv.Itoa(u.UIDNumber)}, {"gidNumber", strconv.Itoa(u.GIDNumber)},
		{"homeDirectory", u.Home}, {"status", u.Status},
	}
	if u.Mail != "" {
		a = append(a, [2]string{"mail", u.Mail})
	}
	for _, m := range u.ExtraMail {
		a = append(a, [2]string{"mail", m})
	}
	if u.Password != "" {
		a = append(a, [2]string{"userPassword", u.Password})
	}
	return a
}

func userLDIF(dn string, u LDAPUser) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\n", dn)
	for _, kv := range userAttrs(u) {
		// base64 (::) keeps "{SSHA}..." and any odd bytes safe
		fmt.Fprintf(&b, "%s:: %s\n", kv[0], base64.StdEncoding.EncodeToString([]byte(kv[1])))
	}
	return b.String()
}

// AddUser adds u under ou=people, replacing an existing entry with the same CN.
func (s *SlapdServer) AddUser(t testing.TB, u LDAPUser) {
	t.Helper()
	u, err := s.fillUser(u)
	if err != nil {
		t.Fatalf("testenv: AddUser: %v", err)
	}
	c, err := s.adminConn()
	if err != nil {
		t.Fatalf("testenv: AddUser: %v", err)
	}
	defer c.Close()
	dn := s.UserDN(u.CN)
	req := ldap.NewAddRequest(dn, nil)
	vals := map[string][]string{}
	var order []string
	for _, kv := range userAttrs(u) {
		if _, ok := vals[kv[0]]; !ok {
			order = append(order, kv[0])
		}
		vals[kv[0]] = append(vals[kv[0]], kv[1])
	}
	for _, k := range order {
		req.Attribute(k, vals[k])
	}
	err = c.Add(req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
		if err = c.Del(ldap.NewDelRequest(dn, nil)); err == nil {
			err = c.Add(req)
		}
	}
	if err != nil {
		t.Fatalf("testenv: AddUser %s: %v", dn, err)
	}
}

// DeleteUser removes cn=<cn> from ou=people; a missing entry is not an error.
func (s *SlapdServer) DeleteUser(t testing.TB, cn string) {
	t.Helper()
	c, err := s.adminConn()
	if err != nil {
		t.Fatalf("testenv: DeleteUser: %v", err)
	}
	defer c.Close()
	if err := c.Del(ldap.NewDelRequest(s.UserDN(cn), nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		t.Fatalf("testenv: DeleteUser %s: %v", cn, err)
	}
}

// SetStatus replaces the status attribute of cn=<cn> (valid|invalid).
func (s *SlapdServer) SetStatus(t testing.TB, cn, status string) {
	t.Helper()
	s.Modify(t, cn, "status", status)
}

// Modify replaces attribute attr of cn=<cn> with vals (none: delete the attribute).
func (s *SlapdServer) Modify(t testing.TB, cn, attr string, vals ...string) {
	t.Helper()
	c, err := s.adminConn()
	if err != nil {
		t.Fatalf("testenv: Modify: %v", err)
	}
	defer c.Close()
	req := ldap.NewModifyRequest(s.UserDN(cn), nil)
	req.Replace(attr, vals)
	if err := c.Modify(req); err != nil {
		t.Fatalf("testenv: Modify %s %s: %v", cn, attr, err)
	}
}

// Log returns slapd's log (-d stats: one line per operation).
func (s *SlapdServer) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "slapd.log"))
	return string(b)
}

// HashSSHA returns the {SSHA} hash of pw (salted SHA-1, as slappasswd -h {SSHA}).
func HashSSHA(pw string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	h := sha1.New()
	h.Write([]byte(pw))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...))
}

// urlEscapeAll percent-encodes everything except [A-Za-z0-9._-] (ldapi paths: / → %2F).
func urlEscapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// slapdSchema adds the status attribute and the mailAccountStatus aux class.
// 1.3.6.1.4.1.99999 is a placeholder private-enterprise arc.
const slapdSchema = `dn: cn=mailstatus,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: mailstatus
olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.1.1 NAME 'status'
  DESC 'account status: valid | invalid'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32} SINGLE-VALUE )
olcObjectClasses: ( 1.3.6.1.4.1.99999.1.2.1 NAME 'mailAccountStatus'
  DESC 'aux class carrying the status attribute' SUP top AUXILIARY
  MAY ( status $ mail ) )
`

// slapdConfig is cn=config built offline: %[1]s dir, %[2]s suffix, %[3]s rootDN, %[4]s rootPW hash.
// On Debian back_mdb is a module. userPassword: self write, anonymous auth, else none;
// everything else readable by anyone; root over ldapi (SASL EXTERNAL) manages all.
const slapdConfig = `dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: %[1]s/slapd.pid
olcLogLevel: stats

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif
include: file://%[1]s/mailstatus.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcPasswordHash: {SSHA}

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: %[2]s
olcDbDirectory: %[1]s/db
olcDbMaxSize: 104857600
olcDbNoSync: TRUE
olcRootDN: %[3]s
olcRootPW: %[4]s
olcDbIndex: objectClass eq
olcDbIndex: cn,uid,mail,status eq
olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {1}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * read
`
