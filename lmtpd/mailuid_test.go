package lmtpd

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dovetail-mail/dovetail/directory"
)

// TestMailUIDForVirtualUsers: a user the directory gives no uid gets mail_uid /
// mail_gid (Dovecot's vmail setup) instead of root-owned 0600 files Dovecot cannot
// read; a user with a uid keeps it.
func TestMailUIDForVirtualUsers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MailUID, cfg.MailGID = 5000, 5001
	dv := NewDeliverer(Options{Config: cfg, Directory: &fakeDir{}})
	root := os.Geteuid() == 0
	mb, err := dv.mailbox(&directory.User{Login: "v", Home: "/srv/v"}, "v@example.com")
	if err != nil || mb.UID != 5000 || mb.GID != 5001 || mb.Chown != root {
		t.Errorf("virtual user: %+v %v", mb, err)
	}
	mb, _ = dv.mailbox(&directory.User{Login: "u", Home: "/home/u", UID: 1234, GID: 100}, "u@example.com")
	if mb.UID != 1234 || mb.GID != 100 {
		t.Errorf("user with a uid: %+v", mb)
	}
	for _, bad := range [][2]int{{5000, 0}, {-1, -1}} {
		c := DefaultConfig()
		c.MailUID, c.MailGID = bad[0], bad[1]
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "mail_uid") {
			t.Errorf("mail_uid %d mail_gid %d accepted: %v", bad[0], bad[1], err)
		}
	}
	if !root {
		return
	}
	e := newEnv(t, func(o *Options) { o.Config.MailUID, o.Config.MailGID = 5000, 5001 })
	if _, d := e.dial().send("s@example.net", []string{"alice@example.com"}, testMsg); !strings.HasPrefix(d[0], "250") {
		t.Fatalf("%q", d)
	}
	fs := files(t, filepath.Join(e.dir, "alice/Maildir/new"))
	st, err := os.Stat(fs[0])
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 5000 || s.Gid != 5001 {
		t.Errorf("delivered file owned by %d:%d, want 5000:5001", s.Uid, s.Gid)
	}
}
