// Package config decodes dovetail's one YAML configuration file strictly: unknown
// keys and wrong types are errors, and every problem is reported at once with
// file:line and, where it helps, a hint.
//
// Each component owns a section: a struct with yaml tags, a Default…Config
// constructor and an optional Validate() error that checks only its own direct
// fields (the loader walks nested structs, slices and maps and validates those
// itself). Validate returns FieldErrors (see Errorf/Join) so the loader can point at
// the line of the offending key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validator is implemented by config structs that check their own fields.
type Validator interface{ Validate() error }

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// LoadFile reads path and decodes it into dst (a pointer to a struct already holding
// the defaults). On any problem it returns Problems (errors.Is(err, ErrInvalid)).
func LoadFile(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return Load(path, data, dst)
}

// Load decodes data (named name in messages) into dst; see LoadFile.
func Load(name string, data []byte, dst any) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Problems{{File: name, Line: yamlErrLine(err), Msg: cleanYAMLErr(err)}}
	}
	lines := map[string]int{}
	var probs Problems
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		w := walker{name: name, lines: lines, probs: &probs}
		w.check(root.Content[0], reflect.TypeOf(dst).Elem(), "")
	}
	if len(probs) == 0 && len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(dst); err != nil {
			probs = append(probs, Problem{File: name, Line: yamlErrLine(err), Msg: cleanYAMLErr(err)})
		}
	}
	if len(probs) == 0 {
		validate(reflect.ValueOf(dst), "", func(path string, err error) {
			probs = append(probs, Problem{File: name, Line: lineFor(lines, path), Msg: err.Error()})
		})
	}
	if len(probs) > 0 {
		return probs
	}
	return nil
}

// Validate runs every Validate method reachable from v (a pointer to a config
// struct) and returns all problems, for configs built in code (the embedded default).
func Validate(name string, v any) error {
	var probs Problems
	validate(reflect.ValueOf(v), "", func(path string, err error) {
		probs = append(probs, Problem{File: name, Msg: err.Error()})
	})
	if len(probs) > 0 {
		return probs
	}
	return nil
}

type walker struct {
	name  string
	lines map[string]int
	probs *Problems
}

func (w walker) add(line int, format string, args ...any) {
	*w.probs = append(*w.probs, Problem{File: w.name, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// check compares the YAML tree with the Go type so that unknown keys and type
// errors are all found in one pass, each with its own line.
func (w walker) check(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	w.lines[path] = n.Line
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n.Line, "%s: %s", display(path), stripLine(err.Error()))
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n.Line, "%s: expected a mapping of keys, got %s", display(path), kindName(n))
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if seen[k.Value] {
				w.add(k.Line, "%s: key given twice", p)
				continue
			}
			seen[k.Value] = true
			f, ok := fields[k.Value]
			if !ok {
				w.add(k.Line, "%s: unknown key (hint: %s)", p, suggest(k.Value, fields))
				continue
			}
			w.lines[p] = k.Line
			w.check(v, f.Type, p)
			w.lines[p] = k.Line
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n.Line, "%s: expected a mapping, got %s", display(path), kindName(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			w.check(v, t.Elem(), p)
			w.lines[p] = k.Line
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			w.add(n.Line, "%s: expected a list, got %s", display(path), kindName(n))
			return
		}
		for i, c := range n.Content {
			w.check(c, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	case reflect.Interface:
	default:
		if n.Kind != yaml.ScalarNode {
			w.add(n.Line, "%s: expected a %s value, got %s", display(path), t.Kind(), kindName(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n.Line, "%s: %q is not a valid %s", display(path), n.Value, t.Kind())
		}
	}
}

func validate(v reflect.Value, path string, report func(string, error)) {
	if !v.IsValid() {
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.CanAddr() {
		if val, ok := v.Addr().Interface().(Validator); ok {
			if err := val.Validate(); err != nil {
				for _, e := range flatten(err) {
					var fe *FieldError
					if errors.As(e, &fe) {
						p := join(path, fe.Field)
						msg := (&FieldError{Field: display(p), Msg: fe.Msg, Hint: fe.Hint}).Error()
						report(p, errors.New(msg))
					} else {
						report(path, fmt.Errorf("%s: %v", display(path), e))
					}
				}
			}
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if isInline(f) {
				validate(v.Field(i), path, report)
				continue
			}
			validate(v.Field(i), join(path, fieldName(f)), report)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			validate(v.Index(i), path+"["+strconv.Itoa(i)+"]", report)
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			// Map values are not addressable: validate a copy.
			c := reflect.New(v.Type().Elem()).Elem()
			c.Set(v.MapIndex(k))
			validate(c, join(path, fmt.Sprint(k)), report)
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if isInline(f) {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name := fieldName(f); name != "-" {
			out[name] = f
		}
	}
	return out
}

func isInline(f reflect.StructField) bool {
	_, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct
}

func fieldName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if name, _, _ := strings.Cut(tag, ","); name != "" {
		return name
	}
	return strings.ToLower(f.Name)
}

// lineFor finds the line of path or of its closest ancestor that has one.
func lineFor(lines map[string]int, path string) int {
	for p := path; ; {
		if l, ok := lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return lines[""]
		}
		p = p[:i]
	}
}

func suggest(key string, fields map[string]reflect.StructField) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	best, bestD := "", 3
	for _, n := range names {
		if d := distance(strings.ToLower(key), n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "known keys here: " + strings.Join(names, ", ")
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + "." + b
}

func display(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func yamlErrLine(err error) int {
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		rest := s[i+5:]
		j := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if j > 0 {
			n, _ := strconv.Atoi(rest[:j])
			return n
		}
	}
	return 0
}

func cleanYAMLErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n  ")
	return stripLine(s)
}

func stripLine(s string) string {
	if strings.HasPrefix(s, "line ") {
		if i := strings.Index(s, ": "); i > 0 {
			return s[i+2:]
		}
	}
	return s
}
