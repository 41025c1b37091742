package ldap

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// TLSConfig is the `directory.ldap.tls` section: whom ldaps:// and StartTLS
// connections trust and how dovetail proves itself, as Dovecot's auth-ldap
// tls_ca_cert_file / tls_cert_file / tls_key_file and Postfix's ldap_table
// tls_ca_cert_file / tls_cert / tls_key. The server's certificate is always
// verified (tls_require_cert = demand); there is no switch to turn that off.
// The files are read at start-up: a renewed certificate needs a restart, as
// any change to the directory section does.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CA certificates that may sign the LDAP
	// server's certificate. It REPLACES the system store (as OpenLDAP's
	// TLS_CACERT does): a private CA then vouches only for the LDAP server,
	// and no public CA can vouch for a server claiming its name. Empty: the
	// system store (and SSL_CERT_FILE / SSL_CERT_DIR).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are dovetail's client certificate (PEM, the chain
	// may follow the certificate) and its private key, for a slapd with
	// TLSVerifyClient demand. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate is checked against
	// (and sent as SNI) instead of each URI's host, e.g. when the URIs are
	// IP addresses and the certificate names the host.
	ServerName string `yaml:"server_name"`
}

// set reports whether any TLS setting is given.
func (t *TLSConfig) set() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// clientConfig reads the files and returns the base tls.Config of every
// connection (dialURI fills in ServerName per URI when it is not overridden).
// Its errors are config.FieldErrors below "tls" naming the file.
func (t *TLSConfig) clientConfig() (*tls.Config, error) {
	// Go's default minimum for clients is TLS 1.2 already; said here so that
	// no future default can lower it for the binds' passwords.
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	var errs []error
	if t.CAFile != "" {
		pool, err := loadCAFile(t.CAFile)
		if err != nil {
			errs = append(errs, config.Errorf("tls.ca_file", err.Error(), "a PEM file with the certificate(s) of the CA that signed the LDAP server's certificate"))
		}
		c.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		errs = append(errs, config.Errorf("tls.key_file", "is required with tls.cert_file", "the PEM private key of the client certificate"))
	case t.CertFile == "" && t.KeyFile != "":
		errs = append(errs, config.Errorf("tls.cert_file", "is required with tls.key_file", "the PEM client certificate"))
	case t.CertFile != "":
		cert, field, err := loadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			errs = append(errs, config.Errorf(field, err.Error(), ""))
		} else {
			c.Certificates = []tls.Certificate{cert}
		}
	}
	if len(errs) > 0 {
		return nil, config.Join(errs...)
	}
	return c, nil
}

// loadCAFile parses every certificate of a PEM bundle. Unlike
// x509.CertPool.AppendCertsFromPEM it fails on a block it cannot parse: a
// bundle that silently lost the one CA that matters would only show as
// failing connections.
func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %v", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// loadKeyPair reads the client certificate and key and returns the setting to
// blame when they do not work.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, string, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, "tls.cert_file", err
	}
	if b, _ := pem.Decode(certPEM); b == nil {
		return tls.Certificate{}, "tls.cert_file", fmt.Errorf("%s holds no PEM certificate", certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, "tls.key_file", err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, "tls.key_file", fmt.Errorf("%s with tls.cert_file %s: %v", keyFile, certFile, err)
	}
	return cert, "", nil
}

// Alerts a TLS server sends when it does not accept the client's certificate
// (RFC 8446 §6.2).
var clientCertAlerts = map[tls.AlertError]bool{
	42: true, 43: true, 44: true, 45: true, 46: true, // bad, unsupported, revoked, expired, unknown certificate
	48: true, 116: true, // unknown CA, certificate required
}

// certProblem tells whether err is a certificate problem and whose: the
// LDAP server's certificate failed verification, or the server refused
// dovetail's. Such an error is still a temporary failure (a broken
// dependency, as a server that is down), but the log must say what to fix.
func certProblem(err error) string {
	var verr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verr) || errors.As(err, &unknownCA) || errors.As(err, &host) || errors.As(err, &invalid) {
		return "LDAP server certificate not accepted (check directory.ldap.tls.ca_file and tls.server_name)"
	}
	if errors.Is(err, errNoClientCert) {
		return "LDAP server asked for a TLS client certificate and none is configured (set directory.ldap.tls.cert_file and key_file)"
	}
	var alert tls.AlertError
	if errors.As(err, &alert) && clientCertAlerts[alert] {
		return "LDAP server refused the TLS client certificate (check directory.ldap.tls.cert_file, or the server's TLS settings)"
	}
	return ""
}
