package daemon

import (
	"fmt"
	"log/slog"
	"strings"

	sdaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Service manager notifications (sd_notify), for a unit of Type=notify: systemd
// then knows dovetail is ready when every listener is open — not merely when
// the process started — so units ordered after it (postfix.service) start
// against sockets that answer; `systemctl reload` and `status` show the
// reload and its outcome; a stop is reported as it begins. Without
// $NOTIFY_SOCKET (not under systemd) nothing is sent.

// notify sends state; a failure is logged once per call at debug level (a
// missing or vanished socket must not disturb the daemon).
func notify(log *slog.Logger, state ...string) {
	if _, err := sdaemon.SdNotify(false, strings.Join(state, "\n")); err != nil {
		log.Debug("sd_notify failed", "err", err)
	}
}

// reloadingState is RELOADING=1 with the CLOCK_MONOTONIC time systemd 253+
// (Type=notify-reload) wants with it.
func reloadingState() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return sdaemon.SdNotifyReloading
	}
	return fmt.Sprintf("%s\nMONOTONIC_USEC=%d", sdaemon.SdNotifyReloading, ts.Nano()/1000)
}

// status is a STATUS= line (one line: systemd shows it in `systemctl status`).
func status(format string, args ...any) string {
	return "STATUS=" + strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
}
