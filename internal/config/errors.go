package config

import (
	"errors"
	"fmt"
)

// FieldError is a problem with one field, relative to the struct whose Validate
// returned it. The loader prefixes the section path and adds file:line.
type FieldError struct {
	Field string // dotted yaml path below the validated struct, e.g. "listen.address"
	Msg   string
	Hint  string // optional: how to fix it
}

func (e *FieldError) Error() string {
	s := e.Field + ": " + e.Msg
	if e.Field == "" {
		s = e.Msg
	}
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

// Errorf builds a FieldError.
func Errorf(field, msg, hint string) error { return &FieldError{Field: field, Msg: msg, Hint: hint} }

// Join is errors.Join that returns nil for no errors; each joined FieldError is
// reported on its own line.
func Join(errs ...error) error { return errors.Join(errs...) }

// Prefix returns err with every FieldError's Field prefixed by prefix, for a
// Validate that delegates to nested structs.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			c := *fe
			c.Field = joinPath(prefix, fe.Field)
			out = append(out, &c)
		} else {
			out = append(out, &FieldError{Field: prefix, Msg: e.Error()})
		}
	}
	return errors.Join(out...)
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "." + b
}

// Problem is one located problem in a config file.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// Problems is every problem found in one load; Error lists them one per line.
type Problems []Problem

func (ps Problems) Error() string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += "\n"
		}
		s += p.String()
	}
	return s
}

// ErrInvalid is wrapped by every load failure caused by the file's content.
var ErrInvalid = errors.New("invalid configuration")

// Unwrap lets errors.Is(err, ErrInvalid) work.
func (ps Problems) Unwrap() error { return ErrInvalid }
