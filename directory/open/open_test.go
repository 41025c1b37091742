package diropen

import (
	"context"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/config"
)

func TestLoadAndOpen(t *testing.T) {
	type file struct {
		Directory Config `yaml:"directory"`
	}
	f := file{Directory: DefaultConfig()}
	if err := config.Load("default", []byte("directory:\n  backend: static\n"), &f); err != nil {
		t.Fatalf("default: %v", err)
	}
	d, err := Open(context.Background(), f.Directory, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(context.Background(), "demo@example.com", "demo"); err != nil {
		t.Fatal(err)
	}

	f = file{Directory: DefaultConfig()}
	err = config.Load("bad.yaml", []byte("directory:\n  backend: ldap\n  ldap:\n    scope: deep\n"), &f)
	if err == nil || !strings.Contains(err.Error(), "ldap.uris") {
		t.Fatalf("ldap without uris: %v", err)
	}
	f = file{Directory: DefaultConfig()}
	src := "directory:\n  backend: ldap\n  ldap:\n    uris: [ldap://127.0.0.1:1]\n    base_dn: dc=x\n    auth_mode: bind\n    bind_dn: cn=a\n    bind_password: pw\n"
	if err := config.Load("ok.yaml", []byte(src), &f); err != nil {
		t.Fatal(err)
	}
	if f.Directory.LDAP.PoolSize != 8 || f.Directory.LDAP.Attributes.Login != "cn" {
		t.Errorf("defaults lost: %+v", f.Directory.LDAP)
	}
	if _, err := Open(context.Background(), f.Directory, nil); err != nil {
		t.Fatalf("Open must not need the server: %v", err)
	}
}
