package cli

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/daemon"
)

// restartOnly lists the settings a running process cannot take, by the daemon
// they belong to ("" for every process, "serve" for `dovetail serve`):
// listeners, what a server fixes when it is built, and the shared backends,
// which are opened once. Paths are YAML paths; a reload keeps the running
// value of each and names the ones that changed in one warning.
var restartOnly = map[string][]string{
	"":      {"data_dir", "metrics", "store", "directory"},
	"serve": {"daemons"},
	"authd": {"authd.listen", "authd.mechanisms", "authd.lookup_timeout", "authd.on_unavailable",
		"authd.max_connections", "authd.max_pending", "authd.request_timeout", "authd.idle_timeout", "authd.hostname"},
	"policyd": {"policyd.listen"},
	"milter":  {"milter.listen", "milter.request_macros", "milter.skip_header_replies"},
	"lmtpd": {"lmtpd.listen", "lmtpd.also_listen", "lmtpd.hostname", "lmtpd.max_message_size",
		"lmtpd.read_timeout", "lmtpd.write_timeout", "quarantine"},
}

// reloader applies a re-read config file to running daemons, all or nothing.
type reloader struct {
	app     *App
	rt      *daemon.Runtime
	units   []*unit
	started *Config // the config the daemons were built with
	names   []string
	serve   bool
}

func (r *reloader) restartPaths() []string {
	ps := slices.Clone(restartOnly[""])
	if r.serve {
		ps = append(ps, restartOnly["serve"]...)
	}
	for _, n := range r.names {
		ps = append(ps, restartOnly[n]...)
	}
	return ps
}

// reload reads and validates the config file, has every daemon build its new
// state (prepare), and only when all of that worked swaps it all in: the
// global config, logging, the collector settings and each daemon's state.
// On any error nothing has changed.
func (r *reloader) reload(ctx context.Context) error {
	next, err := LoadConfig(r.app.ConfigPath)
	if err != nil {
		return err
	}
	paths := r.restartPaths()
	var pending []string
	for _, p := range paths {
		pending = append(pending, changedSettings(r.started, next, p)...)
	}
	eff := keepSettings(next, r.started, paths)

	var stages []staged
	var errs []error
	for _, u := range r.units {
		if u.prepare == nil {
			continue
		}
		s, err := u.prepare(ctx, eff)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.Name, err))
			continue
		}
		stages = append(stages, s)
	}
	// What prepare built holds nothing that needs releasing (engines,
	// filters, senders): a refused reload just drops it.
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, s := range stages {
		if s.apply != nil {
			if err := s.apply(); err != nil {
				return err
			}
		}
	}

	r.app.mu.Lock()
	r.app.cfg = eff
	r.app.mu.Unlock()
	if r.app.logs != nil {
		r.app.logs.set(eff.Log)
	}
	tuneGC(eff.Runtime)
	r.rt.SetGrace(eff.ShutdownGrace.D())
	for _, s := range stages {
		if s.commit != nil {
			s.commit()
		}
	}
	if len(pending) > 0 {
		r.app.Log.Warn("restart needed to apply: "+strings.Join(pending, ", "), "settings", pending)
	}
	return nil
}

// keepSettings returns a copy of next with the settings at paths taken from
// running: the configuration the process actually runs with after a reload.
func keepSettings(next, running *Config, paths []string) *Config {
	eff := *next
	for _, p := range paths {
		dst, ok1 := config.FieldAt(reflect.ValueOf(&eff).Elem(), p)
		src, ok2 := config.FieldAt(reflect.ValueOf(running).Elem(), p)
		if ok1 && ok2 {
			dst.Set(src)
		}
	}
	return &eff
}

// changedSettings lists the YAML paths of the leaves under path that differ
// between a and b.
func changedSettings(a, b *Config, path string) []string {
	va, ok1 := config.FieldAt(reflect.ValueOf(a).Elem(), path)
	vb, ok2 := config.FieldAt(reflect.ValueOf(b).Elem(), path)
	if !ok1 || !ok2 {
		return nil
	}
	return diffValues(path, va, vb)
}

func diffValues(path string, a, b reflect.Value) []string {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return nil
	}
	if a.Kind() != reflect.Struct {
		return []string{path}
	}
	var out []string
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, inline := config.YAMLName(f)
		if name == "-" {
			continue
		}
		p := path
		if !inline {
			p = path + "." + name
		}
		out = append(out, diffValues(p, a.Field(i), b.Field(i))...)
	}
	if len(out) == 0 { // differs only in unexported state
		return []string{path}
	}
	return out
}
