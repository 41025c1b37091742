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
	"io"
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
//
// Problems are collected in three passes so that one mistake does not hide the
// others: the tree walk finds every unknown key, repeated key and wrong type;
// each top-level section is then decoded on its own (a section with a bad value
// keeps its defaults for it, the others still get theirs); and semantic
// validation runs for every section that decoded cleanly. Only a syntax error
// stops early, as the parser cannot go on after one.
//
// Top-level keys starting with "x-" are ignored (the docker-compose convention),
// so a file can hold anchors for YAML merge keys (<<: *name).
func Load(name string, data []byte, dst any) error {
	doc, prob := parseDocument(name, data)
	if prob != nil {
		return Problems{*prob}
	}
	lines := map[string]int{}
	var probs Problems
	w := walker{name: name, lines: lines, probs: &probs, bad: map[string]bool{}, checked: map[checkedNode]bool{}}
	if doc != nil {
		w.check(doc, reflect.TypeOf(dst).Elem(), "")
		w.decode(doc, reflect.ValueOf(dst).Elem())
	}
	reported := map[string]bool{}
	validate(reflect.ValueOf(dst), "", func(path string, err error) {
		// A value that failed to decode kept its default, and the section's
		// checks would judge that default (or a mix of it and the file's
		// values): the type error already says what to fix.
		if w.tainted(path) {
			return
		}
		// A section that checks the field itself has said it in its words.
		if errors.Is(err, errNegativeDuration) && reported[path] {
			return
		}
		reported[path] = true
		probs = append(probs, Problem{File: name, Line: lineFor(lines, path), Msg: err.Error()})
	})
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
		return probs
	}
	return nil
}

// parseDocument returns the top node of the file's one document, nil for a
// file that is empty or holds only comments.
func parseDocument(name string, data []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, &Problem{File: name, Line: yamlErrLine(err), Msg: cleanYAMLErr(err)}
	}
	// A second document would be ignored by the decoder: the settings in it
	// would silently not apply. A bare trailing "---" is harmless.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, &Problem{File: name, Line: yamlErrLine(err), Msg: "only one YAML document is allowed; a second one starts here (" + cleanYAMLErr(err) + ")"}
	case !emptyDocument(&next):
		return nil, &Problem{File: name, Line: next.Line, Msg: "only one YAML document is allowed (hint: remove the \"---\" line and merge the settings into the first document)"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func emptyDocument(n *yaml.Node) bool {
	if n.Kind != yaml.DocumentNode {
		return false
	}
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode || c.Tag != "!!null" || c.Value != "" {
			return false
		}
	}
	return true
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
	bad   map[string]bool // paths whose value is not what the file says
	// checked are the nodes already compared with a type. An alias refers to
	// its anchor's node, and checking it again at every path an alias puts it
	// at is exponential in the nesting (forty aliases per level over four
	// levels of lists are 2.5 million paths from a few hundred bytes; yaml's
	// decoder refuses that as excessive aliasing, but only after this walk).
	// Its problems are the same at every path: they are reported once, at
	// its line. The value says whether one of them was a bad value
	// (addBad): every path that holds the node is then bad too, so that its
	// section's checks and the decoder do not report it again.
	checked map[checkedNode]bool
}

type checkedNode struct {
	n *yaml.Node
	t reflect.Type
}

func (w walker) add(line int, format string, args ...any) {
	*w.probs = append(*w.probs, Problem{File: w.name, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// addBad reports a value that cannot be used as written.
func (w walker) addBad(path string, line int, format string, args ...any) {
	w.bad[path] = true
	w.add(line, format, args...)
}

// tainted reports whether path is in a top-level section holding a value that
// did not decode.
func (w walker) tainted(path string) bool {
	s := section(path)
	for b := range w.bad {
		if section(b) == s {
			return true
		}
	}
	return false
}

func section(path string) string {
	if i := strings.IndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return path
}

// ignoredTopLevel reports keys left for the file's own use, such as anchors
// for merge keys: "x-" as in docker-compose files.
func ignoredTopLevel(path, key string) bool { return path == "" && strings.HasPrefix(key, "x-") }

// entry is one key of a mapping as it applies: written there, or brought in by
// a merge key (<<: *anchor), which never overrides a key written in place.
type entry struct{ k, v *yaml.Node }

// entries returns the mapping's keys in effect and the repeated ones.
func (w walker) entries(n *yaml.Node, path string) (out []entry, dups []entry) {
	return w.mergedEntries(n, path, map[*yaml.Node]bool{})
}

// mergedEntries is entries with the mappings merged so far: a mapping merged
// a second time (through another alias of its anchor) cannot add a key, as
// the earlier merge wins, and expanding it again would make nested merges
// exponential (ten aliases per level over nine levels is 10^9 expansions).
func (w walker) mergedEntries(n *yaml.Node, path string, done map[*yaml.Node]bool) (out []entry, dups []entry) {
	var merged []entry
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			merged = append(merged, w.mergeSources(k, v, path, done)...)
			continue
		}
		if ignoredTopLevel(path, k.Value) {
			continue
		}
		if seen[k.Value] {
			dups = append(dups, entry{k, v})
			continue
		}
		seen[k.Value] = true
		out = append(out, entry{k, v})
	}
	for _, e := range merged {
		if !seen[e.k.Value] {
			seen[e.k.Value] = true
			out = append(out, e)
		}
	}
	return out, dups
}

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && (k.Tag == "!!merge" || k.Tag == "" && k.Value == "<<" && k.Style == 0)
}

// mergeSources expands the value of a merge key: a mapping, or a list of
// mappings of which the earlier win (YAML's merge key type).
func (w walker) mergeSources(k, v *yaml.Node, path string, done map[*yaml.Node]bool) []entry {
	v = resolve(v)
	var srcs []*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		srcs = []*yaml.Node{v}
	case yaml.SequenceNode:
		for _, c := range v.Content {
			srcs = append(srcs, resolve(c))
		}
	default:
		srcs = []*yaml.Node{v}
	}
	var out []entry
	for _, src := range srcs {
		if src.Kind != yaml.MappingNode {
			w.addBad(path, k.Line, "%s: <<: merges a mapping or a list of mappings, got %s", display(path), kindName(src))
			continue
		}
		if done[src] {
			continue
		}
		done[src] = true
		es, _ := w.mergedEntries(src, path, done)
		out = append(out, es...)
	}
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// check compares the YAML tree with the Go type so that unknown keys and type
// errors are all found in one pass, each with its own line.
func (w walker) check(n *yaml.Node, t reflect.Type, path string) {
	n = resolve(n)
	w.lines[path] = n.Line
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	k := checkedNode{n, t}
	if bad, done := w.checked[k]; done {
		if bad {
			w.bad[path] = true
		}
		return
	}
	w.checked[k] = false
	bad := len(w.bad)
	defer func() { w.checked[k] = len(w.bad) > bad }()
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			for _, m := range yamlMessages(err) {
				w.addBad(path, n.Line, "%s: %s", display(path), m)
			}
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.addBad(path, n.Line, "%s: expected a mapping of keys, got %s", display(path), kindName(n))
			return
		}
		fields := yamlFields(t)
		es, dups := w.entries(n, path)
		for _, d := range dups {
			w.addBad(join(path, d.k.Value), d.k.Line, "%s: key given twice", join(path, d.k.Value))
		}
		for _, e := range es {
			k, v := e.k, e.v
			p := join(path, k.Value)
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
			w.addBad(path, n.Line, "%s: expected a mapping, got %s", display(path), kindName(n))
			return
		}
		es, dups := w.entries(n, path)
		for _, d := range dups {
			w.addBad(join(path, d.k.Value), d.k.Line, "%s: key given twice", join(path, d.k.Value))
		}
		for _, e := range es {
			p := join(path, e.k.Value)
			w.check(e.v, t.Elem(), p)
			w.lines[p] = e.k.Line
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			w.addBad(path, n.Line, "%s: expected a list, got %s", display(path), kindName(n))
			return
		}
		for i, c := range n.Content {
			w.check(c, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	case reflect.Interface:
	default:
		if n.Kind != yaml.ScalarNode {
			w.addBad(path, n.Line, "%s: expected a %s value, got %s", display(path), t.Kind(), kindName(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.addBad(path, n.Line, "%s: %q is not a valid %s", display(path), n.Value, t.Kind())
		}
	}
}

// decode decodes each top-level key of n into its field of v on its own, so a
// section the decoder gives up on (a custom type failing with a plain error
// stops yaml.v3) does not leave the sections after it undecoded. Problems the
// walk found are not reported twice; the decoder's are kept for anything the
// walk missed.
func (w walker) decode(n *yaml.Node, v reflect.Value) {
	n = resolve(n)
	if v.Kind() != reflect.Struct || n.Kind != yaml.MappingNode {
		return
	}
	es, _ := w.entries(n, "")
	for _, e := range es {
		f, ok := fieldByYAMLName(v, e.k.Value)
		if !ok {
			continue
		}
		err := e.v.Decode(f.Addr().Interface())
		if err == nil || w.tainted(e.k.Value) {
			continue
		}
		for _, m := range yamlMessages(err) {
			w.addBad(e.k.Value, e.k.Line, "%s: %s", e.k.Value, m)
		}
	}
}

// FieldAt finds the field at the dotted YAML path (such as "lmtpd.listen") in
// struct v, looking into inline structs.
func FieldAt(v reflect.Value, path string) (reflect.Value, bool) {
	for _, key := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		f, ok := fieldByYAMLName(v, key)
		if !ok {
			return reflect.Value{}, false
		}
		v = f
	}
	return v, true
}

// YAMLName returns the key of struct field f in YAML, or inline when f is a
// struct whose fields are keys of the enclosing mapping.
func YAMLName(f reflect.StructField) (name string, inline bool) {
	if isInline(f) {
		return "", true
	}
	return fieldName(f), false
}

// fieldByYAMLName finds the field of struct v named key in YAML, looking into
// inline structs.
func fieldByYAMLName(v reflect.Value, key string) (reflect.Value, bool) {
	f, ok := yamlFields(v.Type())[key]
	if !ok {
		return reflect.Value{}, false
	}
	return v.FieldByIndex(f.Index), true
}

// errNegativeDuration is wrapped by the loader's own check of Duration fields.
var errNegativeDuration = errors.New("must not be negative")

var durationType = reflect.TypeOf(Duration(0))

// validate reports the problems of v (at path) to report: those of every
// Validate method reachable from it, each before those of the fields below,
// and a negative Duration anywhere. No setting takes one (a timeout of -5m
// fails every read at once), and a section that forgets to check one would
// pass it silently.
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
	if v.Type() == durationType && v.Int() < 0 {
		report(path, fmt.Errorf("%s: %s %w (hint: a positive duration such as 30s, or 0 where the setting allows it)",
			display(path), Duration(v.Int()), errNegativeDuration))
		return
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
			for k, sub := range yamlFields(f.Type) {
				sub.Index = append([]int{i}, sub.Index...) // from t, for FieldByIndex
				out[k] = sub
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

// yamlMessages returns the messages of a decoding error without "line N: ":
// one per problem for a *yaml.TypeError, which lists every value that did not fit.
func yamlMessages(err error) []string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		out := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			out[i] = stripLine(e)
		}
		return out
	}
	return []string{cleanYAMLErr(err)}
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
