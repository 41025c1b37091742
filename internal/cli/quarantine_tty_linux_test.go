package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/quarantine"
)

// openPTY returns a pseudo-terminal's controller and its terminal side. A
// Linux box without one skips, but fails with CI=true.
func openPTY(t *testing.T) (ctl, tty *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		testenv.SkipOrFail(t, "no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	if err := unix.IoctlSetPointerInt(int(ctl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		testenv.SkipOrFail(t, "unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ctl.Fd()), unix.TIOCGPTN)
	if err != nil {
		testenv.SkipOrFail(t, "ptsname: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testenv.SkipOrFail(t, "open the terminal side: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	// Raw output: the line discipline must not turn \n into \r\n.
	if tm, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err == nil {
		tm.Oflag &^= unix.OPOST
		unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, tm)
	}
	return ctl, tty
}

// TestShowRawToTerminalIsSafe: `show --raw` is byte-exact for files and
// pipes, but on the admin's terminal the body a spammer wrote must not drive
// it (OSC 52 writes the clipboard, others set the title or answer back).
func TestShowRawToTerminalIsSafe(t *testing.T) {
	dir, cfg := configInDataDir(t, "")
	id := quarantineOne(t, dir, &quarantine.Entry{Recipient: "alice@example.com", User: "alice"},
		"Subject: hi\n\nbody \x1b]52;c;cm0gLXJmIH4K\x07 end\n")
	ctl, tty := openPTY(t)
	var errb strings.Builder
	if code := Main([]string{"-c", cfg, "quarantine", "show", "--raw", id}, strings.NewReader(""), tty, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	tty.Close()
	ctl.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !strings.HasSuffix(string(got), " end\n") {
		n, err := ctl.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if err != io.EOF {
				t.Logf("read: %v", err)
			}
			break
		}
	}
	if s := string(got); strings.ContainsAny(s, "\x1b\x07") || !strings.HasSuffix(s, "body ?]52;c;cm0gLXJmIH4K? end\n") {
		t.Errorf("show --raw on a terminal wrote %q", s)
	}
}
