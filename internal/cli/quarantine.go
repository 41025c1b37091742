package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/lmtpd"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/dovetail-mail/dovetail/spam/bayes"
)

// Exit codes of `dovetail quarantine`, stable for scripts.
const (
	qExitOK       = 0
	qExitError    = 1 // anything unexpected (I/O, index)
	qExitUsage    = 2 // bad flags or arguments
	qExitNotFound = 3 // at least one ID does not exist (the others were processed)
	qExitTempFail = 4 // release: delivery failed temporarily (try again)
	qExitRejected = 5 // release: delivery failed permanently (user gone, over quota)
	qExitNoLearn  = 6 // learning not configured (no Bayes / store)
)

const quarantineHelp = `Review messages lmtpd quarantined instead of delivering.

Exit codes: 0 ok, 1 error, 2 usage, 3 an ID was not found (the others were
processed), 4 release failed temporarily, 5 release failed permanently,
6 learning not configured. --json prints machine-readable output on stdout.`

func newQuarantineCmd(app *App) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "List, show, release, delete, purge and learn from quarantined messages",
		Long:  quarantineHelp,
		// A mistyped subcommand is a usage error (exit 2) as in every
		// command group: see strictGroups.
	}
	// Bad flags and values (--min-score abc, --nope) are usage errors too.
	cmd.SetFlagErrorFunc(usageFlagErr)
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable JSON output")
	cmd.AddCommand(qListCmd(app, &asJSON), qShowCmd(app, &asJSON), qReleaseCmd(app, &asJSON),
		qDeleteCmd(app, &asJSON), qPurgeCmd(app, &asJSON), qLearnCmd(app, &asJSON))
	return cmd
}

// usageArgs turns cobra's argument-count errors into exit code 2.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &ExitError{Code: qExitUsage, Err: err}
		}
		return nil
	}
}

// usageFlagErr is the flag error func of commands whose bad flags exit 2.
func usageFlagErr(_ *cobra.Command, err error) error {
	return &ExitError{Code: qExitUsage, Err: err}
}

func usageErr(format string, a ...any) error {
	return &ExitError{Code: qExitUsage, Err: fmt.Errorf(format, a...)}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func qListCmd(app *App, asJSON *bool) *cobra.Command {
	var user, since string
	var minScore float64
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List quarantined messages, newest first",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := quarantine.Filter{User: user, Limit: limit}
			if since != "" {
				d, err := config.ParseDuration(since)
				if err != nil {
					return usageErr("--since: %v", err)
				}
				f.Since = time.Now().Add(-d)
			}
			if cmd.Flags().Changed("min-score") {
				f.MinScore, f.HasMin = minScore, true
			}
			q, err := openAdminQuarantine(app)
			if err != nil {
				return err
			}
			// Messages whose index entry was lost must not stay invisible.
			if n, err := q.Recover(cmd.Context()); err != nil {
				return err
			} else if n > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "indexed %d message(s) again that had lost their index entry (reason \"recovered\")\n", n)
			}
			ents, err := q.List(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if *asJSON {
				if ents == nil {
					ents = []*quarantine.Entry{}
				}
				return writeJSON(out, ents)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tAGE\tRECIPIENT\tSENDER\tSUBJECT\tSCORE")
			for _, e := range ents {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f\n", e.ID, age(time.Since(e.Time)), clip(e.Recipient, 32),
					clip(orNull(e.Sender), 32), clip(e.Subject, 40), e.Score)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&user, "user", "", "only this recipient address or login")
	c.Flags().StringVar(&since, "since", "", "only messages younger than this (e.g. 2h, 7d)")
	c.Flags().Float64Var(&minScore, "min-score", 0, "only messages with at least this spam score")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many (0 = all)")
	return c
}

// openAdminQuarantine opens the quarantine lmtpd keeps, and only that: Open
// would create an empty one where none is. Run without the right -c (the
// embedded default's data dir), or as root before lmtpd first started, that
// listed nothing and exited 0 — or left a root-owned directory lmtpd could
// not open. lmtpd creates index.db when it starts.
func openAdminQuarantine(app *App) (*quarantine.Store, error) {
	dir := quarantineDir(app)
	if _, err := os.Stat(filepath.Join(dir, "index.db")); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no quarantine in %s (lmtpd creates it when it starts): is this lmtpd's configuration? Give it with -c or DOVETAIL_CONFIG", dir)
	}
	return openQuarantine(app)
}

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// clip shortens s for the table and removes control characters an attacker may
// have put in a subject to mess with the admin's terminal.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// terminalSafe neutralises what a spammer may put in a header to drive the
// admin's terminal (escape sequences, C1 controls, stray CR, invalid UTF-8); tabs
// and line ends stay.
func terminalSafe(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n <= 1:
			out = utf8.AppendRune(out, utf8.RuneError)
		case r == '\t' || r == '\n':
			out = append(out, byte(r))
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			out = append(out, '?')
		default:
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}

// isTerminal reports whether w is a terminal (a character device: /dev/null
// too, which loses nothing by being made safe).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func orNull(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

func qShowCmd(app *App, asJSON *bool) *cobra.Command {
	var headers, raw bool
	c := &cobra.Command{
		Use:   "show ID",
		Short: "Show one message: metadata and header (default), --headers, or --raw",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if headers && raw {
				return usageErr("--headers and --raw exclude each other")
			}
			q, err := openAdminQuarantine(app)
			if err != nil {
				return err
			}
			e, err := q.Get(cmd.Context(), args[0])
			if err != nil {
				return notFound(err)
			}
			msg, err := q.Message(cmd.Context(), args[0])
			if err != nil {
				return notFound(err)
			}
			out := cmd.OutOrStdout()
			hdr := msg
			if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
				hdr = msg[:i+1]
			}
			if *asJSON {
				// JSON strings are UTF-8: a message with other bytes (8-bit
				// bodies, spammers' headers) would come out with U+FFFD in
				// their place, so it is given base64-encoded instead.
				v := struct {
					*quarantine.Entry
					Headers       string `json:"headers,omitempty"`
					HeadersBase64 []byte `json:"headers_base64,omitempty"`
					Raw           string `json:"raw,omitempty"`
					RawBase64     []byte `json:"raw_base64,omitempty"`
				}{Entry: e}
				switch {
				case raw && utf8.Valid(msg):
					v.Raw = string(msg)
				case raw:
					v.RawBase64 = msg
				case utf8.Valid(hdr):
					v.Headers = string(hdr)
				default:
					v.HeadersBase64 = hdr
				}
				return writeJSON(out, v)
			}
			switch {
			case raw && isTerminal(out):
				// The body is the spammer's too: on a terminal it must not
				// drive it (OSC 52 writes the clipboard, others answer back).
				_, err = out.Write(terminalSafe(msg))
				return err
			case raw:
				_, err = out.Write(msg) // byte-exact, e.g. for a file or a pipe
				return err
			case headers:
				_, err = out.Write(terminalSafe(hdr))
				return err
			}
			fmt.Fprintf(out, "ID:        %s\nTime:      %s\nRecipient: %s (user %s)\nSender:    %s\nSubject:   %s\nScore:     %.2f\nSymbols:   %s\nReason:    %s\nSize:      %d\nQueue ID:  %s\n\n",
				e.ID, e.Time.Format(time.RFC3339), clip(e.Recipient, 320), clip(e.User, 320), clip(orNull(e.Sender), 320), clip(e.Subject, 200), e.Score,
				strings.Join(e.Symbols, ","), clip(e.Reason, 200), e.Size, e.QueueID)
			_, err = out.Write(terminalSafe(hdr))
			return err
		},
	}
	c.Flags().BoolVar(&headers, "headers", false, "print only the message header")
	c.Flags().BoolVar(&raw, "raw", false, "print the whole message as stored (with --json: \"raw\", or \"raw_base64\" when it is not UTF-8)")
	return c
}

// bayesUser is whose per-user Bayes table a quarantined message trains: the
// recipient's address, the key the milter classifies it with (not the lmtpd
// login, which the milter never sees: with logins that are not addresses the
// trained table was never consulted).
func bayesUser(e *quarantine.Entry) string { return e.Recipient }

func notFound(err error) error {
	if errors.Is(err, quarantine.ErrNotFound) {
		return &ExitError{Code: qExitNotFound, Err: err}
	}
	return err
}

// idResult is one ID's outcome in --json output of release/delete/learn.
type idResult struct {
	ID     string `json:"id"`
	OK     bool   `json:"ok"`
	Result string `json:"result"`
}

// finish prints results and turns the worst outcome into the exit code.
func finish(out io.Writer, asJSON bool, res []idResult, code int) error {
	if asJSON {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else {
		for _, r := range res {
			fmt.Fprintf(out, "%s: %s\n", r.ID, r.Result)
		}
	}
	if code != qExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

func worse(a, b int) int {
	if b > a {
		return b
	}
	return a
}

func qReleaseCmd(app *App, asJSON *bool) *cobra.Command {
	var learnHam bool
	c := &cobra.Command{
		Use:   "release ID...",
		Short: "Deliver messages to their recipient's INBOX (skipping the quarantine rule) and remove them",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			q, err := openAdminQuarantine(app)
			if err != nil {
				return err
			}
			dv, err := lmtpDeps(ctx, app, app.Config(), q)
			if err != nil {
				return err
			}
			d := lmtpd.NewDeliverer(lmtpd.Options{Config: dv.Config, Directory: dv.Directory, Logger: dv.Logger})
			var learner func(context.Context, []byte, bool, string) error
			if learnHam {
				if learner, err = spamLearner(ctx, app); err != nil {
					return err
				}
			}
			var res []idResult
			code := qExitOK
			for _, id := range args {
				r, c := releaseOne(ctx, d, q, id, learner)
				res = append(res, r)
				code = worse(code, c)
			}
			return finish(cmd.OutOrStdout(), *asJSON, res, code)
		},
	}
	c.Flags().BoolVar(&learnHam, "learn-ham", false, "also train Bayes with the message as ham")
	return c
}

func releaseOne(ctx context.Context, d *lmtpd.Deliverer, q *quarantine.Store, id string,
	learn func(context.Context, []byte, bool, string) error) (idResult, int) {
	// Claimed first: two releases of one ID, or a release racing delete or purge,
	// must not deliver twice or deliver what was deleted. The loser learns the
	// message is gone.
	c, err := q.Claim(ctx, id)
	switch {
	case errors.Is(err, quarantine.ErrNotFound):
		return idResult{ID: id, Result: "not found (or already released or deleted)"}, qExitNotFound
	case errors.Is(err, quarantine.ErrReleasing):
		return idResult{ID: id, Result: "already released or deleted (another release is under way)"}, qExitNotFound
	case err != nil:
		return idResult{ID: id, Result: err.Error()}, qExitError
	}
	e, msg := c.Entry, c.Message
	// putBack returns the message to the quarantine after a failed delivery, also
	// when ctx is what ran out.
	putBack := func(res idResult, code int) (idResult, int) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.Abort(bctx); err != nil {
			res.Result += "; putting it back into the quarantine failed (possible again in an hour): " + err.Error()
		}
		return res, code
	}
	rc, err := d.Resolve(ctx, e.Recipient)
	if err != nil {
		return putBack(idResult{ID: id, Result: "recipient " + e.Recipient + ": " + err.Error()}, deliveryCode(err))
	}
	var derr error
	d.Deliver(ctx, &lmtpd.Delivery{From: e.Sender, Recipients: []lmtpd.Recipient{rc}, Data: msg,
		SessionID: "release-" + id, Release: true}, func(_ int, err error) { derr = err })
	if derr != nil {
		return putBack(idResult{ID: id, Result: "delivery to " + e.Recipient + " failed: " + derr.Error()}, deliveryCode(derr))
	}
	note, code := "released to "+e.Recipient, qExitOK
	if learn != nil {
		if err := learn(ctx, msg, false, bayesUser(e)); err != nil && !errors.Is(err, bayes.ErrAlreadyLearned) {
			// Released all the same; the exit code tells the script the learning failed.
			note, code = note+"; learning as ham failed: "+err.Error(), qExitError
		} else {
			note += "; learned as ham"
		}
	}
	if err := c.Done(ctx); err != nil {
		return idResult{ID: id, OK: true, Result: note + "; but removing it from the quarantine failed: " + err.Error()}, qExitError
	}
	return idResult{ID: id, OK: true, Result: note}, code
}

// deliveryCode maps a delivery error to the exit code through the same
// classification the LMTP replies use (5xx permanent, else temporary).
func deliveryCode(err error) int {
	if lmtpd.IsPermanent(err) {
		return qExitRejected
	}
	return qExitTempFail
}

func qDeleteCmd(app *App, asJSON *bool) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete quarantined messages",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := openAdminQuarantine(app)
			if err != nil {
				return err
			}
			var res []idResult
			code := qExitOK
			for _, id := range args {
				switch err := q.Delete(cmd.Context(), id); {
				case err == nil:
					res = append(res, idResult{ID: id, OK: true, Result: "deleted"})
				case errors.Is(err, quarantine.ErrReleasing):
					res = append(res, idResult{ID: id, Result: "being released"})
					code = worse(code, qExitNotFound)
				case errors.Is(err, quarantine.ErrNotFound):
					res = append(res, idResult{ID: id, Result: "not found"})
					code = worse(code, qExitNotFound)
				default:
					res = append(res, idResult{ID: id, Result: err.Error()})
					code = worse(code, qExitError)
				}
			}
			return finish(cmd.OutOrStdout(), *asJSON, res, code)
		},
	}
}

func qPurgeCmd(app *App, asJSON *bool) *cobra.Command {
	var older string
	c := &cobra.Command{
		Use:   "purge --older-than 30d",
		Short: "Delete quarantined messages older than a duration",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if older == "" {
				return usageErr("--older-than is required (e.g. 30d)")
			}
			d, err := config.ParseDuration(older)
			if err != nil || d < 0 {
				return usageErr("--older-than: invalid duration %q", older)
			}
			q, err := openAdminQuarantine(app)
			if err != nil {
				return err
			}
			rec, err := q.Recover(cmd.Context())
			if err != nil {
				return err
			}
			n, err := q.Purge(cmd.Context(), time.Now().Add(-d))
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]int{"purged": n, "recovered": rec})
			}
			if rec > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "indexed %d message(s) again that had lost their index entry\n", rec)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "purged %d message(s)\n", n)
			return nil
		},
	}
	c.Flags().StringVar(&older, "older-than", "", "age, e.g. 12h, 30d, 2w")
	return c
}

func qLearnCmd(app *App, asJSON *bool) *cobra.Command {
	var asSpam, asHam bool
	c := &cobra.Command{
		Use:   "learn --spam|--ham ID...",
		Short: "Train Bayes with quarantined messages (they stay in the quarantine)",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asSpam == asHam {
				return usageErr("give exactly one of --spam or --ham")
			}
			ctx := cmd.Context()
			learn, err := spamLearner(ctx, app)
			if err != nil {
				return err
			}
			q, err := openAdminQuarantine(app)
			if err != nil {
				return err
			}
			var res []idResult
			code := qExitOK
			class := map[bool]string{true: "spam", false: "ham"}[asSpam]
			for _, id := range args {
				e, err := q.Get(ctx, id)
				var msg []byte
				if err == nil {
					msg, err = q.Message(ctx, id)
				}
				if err == nil {
					err = learn(ctx, msg, asSpam, bayesUser(e))
				}
				switch {
				case err == nil:
					res = append(res, idResult{ID: id, OK: true, Result: "learned as " + class})
				case errors.Is(err, bayes.ErrAlreadyLearned):
					res = append(res, idResult{ID: id, OK: true, Result: "already learned as " + class})
				case errors.Is(err, quarantine.ErrNotFound):
					res = append(res, idResult{ID: id, Result: "not found"})
					code = worse(code, qExitNotFound)
				default:
					res = append(res, idResult{ID: id, Result: err.Error()})
					code = worse(code, qExitError)
				}
			}
			return finish(cmd.OutOrStdout(), *asJSON, res, code)
		},
	}
	c.Flags().BoolVar(&asSpam, "spam", false, "learn as spam")
	c.Flags().BoolVar(&asHam, "ham", false, "learn as ham")
	return c
}

// spamLearner returns a function training the spam engine's Bayes, or exit code 6
// "learning not configured" when Bayes is off or has no store.
func spamLearner(ctx context.Context, app *App) (func(context.Context, []byte, bool, string) error, error) {
	if !spamConfig(app).Bayes.Enabled {
		return nil, &ExitError{Code: qExitNoLearn, Err: errors.New("learning not configured: spam.bayes.enabled is false")}
	}
	e, err := learningEngine(ctx, app)
	if err != nil {
		return nil, &ExitError{Code: qExitNoLearn, Err: fmt.Errorf("learning not configured: %w", err)}
	}
	return func(ctx context.Context, raw []byte, spam bool, user string) error {
		msg, err := e.Parse(bytes.NewReader(raw))
		if err != nil {
			return err
		}
		defer msg.Close()
		return e.Learn(ctx, msg, spam, user)
	}, nil
}
