package ldap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// testPKI is a throwaway CA with a server certificate (127.0.0.1 and
// ldap.test) and a client certificate, plus an unrelated CA, as PEM files.
type testPKI struct {
	ca, otherCA            string
	serverCert, serverKey  string
	clientCert, clientKey  string
	serverPair, clientPair tls.Certificate
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	p := &testPKI{}
	caCert, caKey := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "dovetail test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, nil)
	p.ca = writePEM(t, dir, "ca.pem", caCert.Raw, nil)
	other, _ := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "some other CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	p.otherCA = writePEM(t, dir, "other-ca.pem", other.Raw, nil)
	srv, srvKey := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "ldap.test"}, DNSNames: []string{"ldap.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, caKey)
	p.serverCert = writePEM(t, dir, "server.pem", srv.Raw, nil)
	p.serverKey = writePEM(t, dir, "server.key", nil, srvKey)
	cli, cliKey := issue(t, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "dovetail"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, caKey)
	p.clientCert = writePEM(t, dir, "client.pem", cli.Raw, nil)
	p.clientKey = writePEM(t, dir, "client.key", nil, cliKey)
	var err error
	if p.serverPair, err = tls.LoadX509KeyPair(p.serverCert, p.serverKey); err != nil {
		t.Fatal(err)
	}
	if p.clientPair, err = tls.LoadX509KeyPair(p.clientCert, p.clientKey); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue signs tmpl with parent (nil: self-signed) and returns it with its new key.
func issue(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// writePEM writes a certificate (der) or a PKCS #8 key to dir/name.
func writePEM(t *testing.T, dir, name string, der []byte, key *ecdsa.PrivateKey) string {
	t.Helper()
	b := &pem.Block{Type: "CERTIFICATE", Bytes: der}
	if key != nil {
		k, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		b = &pem.Block{Type: "PRIVATE KEY", Bytes: k}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	slapdPKIMu sync.Mutex
	slapdPKI   *testPKI
)

// slapdTLS gives the shared slapd the test PKI's server certificate (StartTLS
// on its ldap:// listener) through cn=config over ldapi, once per test
// binary, and returns the PKI. It stays: slapd 2.5 refuses to delete its
// TLS settings at run time, and TLS it only offers changes nothing for the
// other tests. So the files live in the slapd's own directory, which lasts
// as long as the server (a restart by an outage test reads them again).
func slapdTLS(t *testing.T, s *testenv.SlapdServer) *testPKI {
	t.Helper()
	slapdPKIMu.Lock()
	defer slapdPKIMu.Unlock()
	if slapdPKI != nil {
		return slapdPKI
	}
	dir := filepath.Join(s.Dir, "ldap-tls-test")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := newTestPKI(t, dir)
	m := goldap.NewModifyRequest("cn=config", nil)
	m.Replace("olcTLSCACertificateFile", []string{p.ca})
	m.Replace("olcTLSCertificateFile", []string{p.serverCert})
	m.Replace("olcTLSCertificateKeyFile", []string{p.serverKey})
	if err := slapdConfig(s, m); err != nil {
		t.Fatalf("enabling TLS on slapd: %v\n%s", err, s.Log())
	}
	slapdPKI = p
	return p
}

// slapdVerifyClient sets olcTLSVerifyClient (never, demand) for the rest
// of the test.
func slapdVerifyClient(t *testing.T, s *testenv.SlapdServer, v string) {
	t.Helper()
	set := func(v string) error {
		m := goldap.NewModifyRequest("cn=config", nil)
		m.Replace("olcTLSVerifyClient", []string{v})
		return slapdConfig(s, m)
	}
	if err := set(v); err != nil {
		t.Fatalf("olcTLSVerifyClient %s: %v", v, err)
	}
	t.Cleanup(func() {
		if err := set("never"); err != nil {
			t.Errorf("olcTLSVerifyClient never: %v", err)
		}
	})
}

// slapdConfig changes cn=config as root over ldapi (SASL EXTERNAL).
func slapdConfig(s *testenv.SlapdServer, m *goldap.ModifyRequest) error {
	if s.LDAPIURL == "" {
		return errors.New("the shared slapd has no ldapi listener to configure TLS through")
	}
	c, err := goldap.DialURL(s.LDAPIURL)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.ExternalBind(); err != nil {
		return err
	}
	return c.Modify(m)
}

// tlsProxy terminates TLS (ldaps://) with the test server certificate and
// relays to slapd's plain listener: the shared slapd has no ldaps:// listener,
// and adding one needs a restart with other -h arguments.
func tlsProxy(t *testing.T, p *testPKI, target string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.serverPair}})
	if err != nil {
		t.Fatal(err)
	}
	return "ldaps://" + testenv.Forward(t, ln, target, nil)
}

// TestTLSAgainstSlapd: StartTLS and ldaps:// with a private CA against the
// real slapd. Without the CA (system store), with the wrong CA or against the
// wrong name the server is not trusted: a temporary failure, as a server that
// is down, and a log line that says it was the certificate. A slapd that
// demands a client certificate gets it when one is configured.
func TestTLSAgainstSlapd(t *testing.T) {
	s := testenv.Slapd(t)
	p := slapdTLS(t, s)
	ldaps := tlsProxy(t, p, strings.TrimPrefix(s.URL, "ldap://"))

	// try logs in (bind mode: both the search and the auth-bind pool
	// connect) and looks up, and returns the first error and the log.
	try := func(t *testing.T, uri string, tc TLSConfig) (logs string, err error) {
		t.Helper()
		cfg := testConfig(s, ModeBind)
		cfg.URIs = []string{uri}
		cfg.StartTLS = strings.HasPrefix(uri, "ldap://")
		cfg.TLS = tc
		var buf testenv.LogBuffer
		d, err := New(cfg, slog.New(slog.NewTextHandler(&buf, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		ctx := context.Background()
		if _, err := d.Authenticate(ctx, "alice", "alicepw"); err != nil {
			return buf.String(), err
		}
		if _, err := d.Authenticate(ctx, "alice", "wrong"); !errors.Is(err, directory.ErrInvalidCredentials) {
			t.Errorf("wrong password over TLS: %v", err)
		}
		_, err = d.LookupAddress(ctx, "c.smith@example.com")
		return buf.String(), err
	}
	untrusted := func(t *testing.T, uri string, tc TLSConfig) {
		t.Helper()
		logs, err := try(t, uri, tc)
		if !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("untrusted server: %v, want ErrUnavailable (a temporary failure)", err)
		}
		if !strings.Contains(logs, "LDAP server certificate not accepted") {
			t.Errorf("log does not name the certificate:\n%s", logs)
		}
	}

	for _, uri := range []string{s.URL, ldaps} {
		scheme, _, _ := strings.Cut(uri, ":")
		t.Run(scheme+"/ca_file", func(t *testing.T) {
			if logs, err := try(t, uri, TLSConfig{CAFile: p.ca}); err != nil {
				t.Fatalf("%v\n%s", err, logs)
			}
		})
		t.Run(scheme+"/system_store", func(t *testing.T) {
			untrusted(t, uri, TLSConfig{})
		})
		t.Run(scheme+"/wrong_ca", func(t *testing.T) {
			untrusted(t, uri, TLSConfig{CAFile: p.otherCA})
		})
	}
	t.Run("server_name", func(t *testing.T) {
		// The URI is an IP address; the name checked is server_name's.
		untrusted(t, s.URL, TLSConfig{CAFile: p.ca, ServerName: "other.test"})
		if logs, err := try(t, s.URL, TLSConfig{CAFile: p.ca, ServerName: "ldap.test"}); err != nil {
			t.Fatalf("%v\n%s", err, logs)
		}
	})
	t.Run("client_cert", func(t *testing.T) {
		slapdVerifyClient(t, s, "demand")
		logs, err := try(t, s.URL, TLSConfig{CAFile: p.ca})
		if !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("no client certificate for a slapd that demands one: %v, want ErrUnavailable", err)
		}
		if !strings.Contains(logs, "client certificate") {
			t.Errorf("log does not name the client certificate:\n%s", logs)
		}
		if logs, err := try(t, s.URL, TLSConfig{CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey}); err != nil {
			t.Fatalf("with the client certificate: %v\n%s", err, logs)
		}
		// Anonymous searches: no bind while dialling, so the refusal comes
		// with the first request, and is logged all the same.
		cfg := testConfig(s, ModePassword)
		cfg.BindDN, cfg.BindPassword, cfg.AuthMode = "", "", ModeBind
		cfg.StartTLS, cfg.TLS = true, TLSConfig{CAFile: p.ca}
		var buf testenv.LogBuffer
		d, err := New(cfg, slog.New(slog.NewTextHandler(&buf, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.LookupLogin(context.Background(), "alice"); !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("anonymous, no client certificate: %v, want ErrUnavailable", err)
		}
		if !strings.Contains(buf.String(), "client certificate") {
			t.Errorf("log does not name the client certificate:\n%s", buf.String())
		}
	})
}

func TestTLSConfigValidate(t *testing.T) {
	dir := t.TempDir()
	p := newTestPKI(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.pem")
	if err := os.WriteFile(broken, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name     string
		uris     []string
		starttls bool
		tls      TLSConfig
		want     []string // substrings of the error; none: valid
	}{
		{name: "no tls settings, plain ldap", uris: []string{"ldap://h"}},
		{name: "starttls with ca", uris: []string{"ldap://h"}, starttls: true, tls: TLSConfig{CAFile: p.ca}},
		{name: "ldaps with everything", uris: []string{"ldaps://h"},
			tls: TLSConfig{CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: "ldap.test"}},
		{name: "ldapi beside ldaps", uris: []string{"ldaps://h", "ldapi://%2Frun%2Fldapi"}, tls: TLSConfig{CAFile: p.ca}},
		{name: "ca file missing", uris: []string{"ldaps://h"}, tls: TLSConfig{CAFile: missing},
			want: []string{"tls.ca_file: open " + missing}},
		{name: "ca file without certificate", uris: []string{"ldaps://h"}, tls: TLSConfig{CAFile: garbage},
			want: []string{"tls.ca_file: " + garbage + " holds no PEM certificate"}},
		{name: "ca file is a key", uris: []string{"ldaps://h"}, tls: TLSConfig{CAFile: p.clientKey},
			want: []string{"tls.ca_file: " + p.clientKey + " holds no PEM certificate"}},
		{name: "ca file with a broken certificate", uris: []string{"ldaps://h"}, tls: TLSConfig{CAFile: broken},
			want: []string{"tls.ca_file: " + broken + ": certificate 1:"}},
		{name: "cert without key", uris: []string{"ldaps://h"}, tls: TLSConfig{CertFile: p.clientCert},
			want: []string{"tls.key_file: is required with tls.cert_file"}},
		{name: "key without cert", uris: []string{"ldaps://h"}, tls: TLSConfig{KeyFile: p.clientKey},
			want: []string{"tls.cert_file: is required with tls.key_file"}},
		{name: "cert file missing", uris: []string{"ldaps://h"}, tls: TLSConfig{CertFile: missing, KeyFile: p.clientKey},
			want: []string{"tls.cert_file: open " + missing}},
		{name: "cert file without certificate", uris: []string{"ldaps://h"}, tls: TLSConfig{CertFile: garbage, KeyFile: p.clientKey},
			want: []string{"tls.cert_file: " + garbage + " holds no PEM certificate"}},
		{name: "key file missing", uris: []string{"ldaps://h"}, tls: TLSConfig{CertFile: p.clientCert, KeyFile: missing},
			want: []string{"tls.key_file: open " + missing}},
		{name: "key of another certificate", uris: []string{"ldaps://h"}, tls: TLSConfig{CertFile: p.clientCert, KeyFile: p.serverKey},
			want: []string{"tls.key_file: " + p.serverKey + " with tls.cert_file " + p.clientCert, "does not match"}},
		{name: "plain ldap without starttls", uris: []string{"ldap://h"}, tls: TLSConfig{CAFile: p.ca},
			want: []string{"uris[0]: ldap://h is plain LDAP", "starttls: true"}},
		{name: "plain ldap beside ldaps", uris: []string{"ldaps://a", "ldap://b"}, tls: TLSConfig{ServerName: "ldap.test"},
			want: []string{"uris[1]: ldap://b is plain LDAP"}},
		{name: "only ldapi", uris: []string{"ldapi://%2Frun%2Fldapi"}, starttls: true, tls: TLSConfig{ServerName: "ldap.test"},
			want: []string{"tls: is set but no URI uses TLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.URIs, c.StartTLS, c.TLS = tc.uris, tc.starttls, tc.tls
			c.BaseDN = "dc=example,dc=com"
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want %q", err, w)
				}
			}
			// New validates too: a directory with such a setting is never built.
			if _, err := New(c, nil); err == nil {
				t.Error("New accepted the config")
			}
		})
	}
}

// TestTLSConfigLoad: through the loader the problem is reported with the
// file, line and full setting name, as `dovetail config check` prints it.
func TestTLSConfigLoad(t *testing.T) {
	var f struct {
		Directory struct {
			LDAP Config `yaml:"ldap"`
		} `yaml:"directory"`
	}
	f.Directory.LDAP = DefaultConfig()
	src := "directory:\n  ldap:\n    uris: [ldaps://ldap.example.com]\n    base_dn: dc=example,dc=com\n    tls:\n      ca_file: /nonexistent/ca.pem\n"
	err := config.Load("x.yaml", []byte(src), &f)
	if err == nil || !strings.Contains(err.Error(), "directory.ldap.tls.ca_file: open /nonexistent/ca.pem") {
		t.Fatalf("Load = %v", err)
	}
}
