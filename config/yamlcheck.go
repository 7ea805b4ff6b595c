package config

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/agnivade/levenshtein"
	"gopkg.in/yaml.v3"
)

// The file is decoded leniently and checked here instead of by yaml.v3's KnownFields, whose
// first unknown key stops the decode with a Go type name ("field shedule not found in type
// config.Flow") and hides every other problem. keyCheck walks the node tree against the
// Config type: every unknown key becomes a Problem with its key path, line and the closest
// known key; every type error is put back on its key path.

// keyCheck holds what one walk learned.
type keyCheck struct {
	p *problems
	// values are the scalar values by line, for naming the key of a type error.
	values map[int][]lineValue
}

type lineValue struct{ path, value string }

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkKeys reports the unknown keys of root (a document node) and indexes its values.
func checkKeys(root *yaml.Node, p *problems) *keyCheck {
	k := &keyCheck{p: p, values: map[int][]lineValue{}}
	if root != nil && root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		k.walk(root.Content[0], reflect.TypeFor[Config](), "", 0)
	}
	return k
}

func (k *keyCheck) walk(n *yaml.Node, t reflect.Type, path string, depth int) {
	for n.Kind == yaml.AliasNode && n.Alias != nil && depth < 32 {
		n, depth = n.Alias, depth+1
	}
	if depth > 32 {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode {
		k.values[n.Line] = append(k.values[n.Line], lineValue{path, n.Value})
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		k.walkStruct(n, t, path, depth)
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), depth+1)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			k.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	}
}

func (k *keyCheck) walkStruct(n *yaml.Node, t reflect.Type, path string, depth int) {
	known := yamlKeys(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Tag == "!!merge" {
			k.walk(val, t, path, depth+1)
			continue
		}
		field, ok := known[key.Value]
		if !ok {
			k.p.addAt(join(path, key.Value), key.Line, "unknown key%s", suggest(key.Value, known))
			continue
		}
		k.walk(val, field, join(path, key.Value), depth+1)
	}
}

// yamlKeys maps a struct's YAML keys to their field types.
func yamlKeys(t reflect.Type) map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys[name] = f.Type
	}
	return keys
}

// suggest names the known key closest to a misspelt one, when one is close enough to be
// the likely intent (an edit distance of at most a third of its length, and 2 at least: a
// swap of two letters costs 2).
func suggest(key string, known map[string]reflect.Type) string {
	best, bestD := "", 0
	for name := range known {
		d := levenshtein.ComputeDistance(key, name)
		if best == "" || d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if best == "" || bestD > max(2, len(best)/3) || bestD >= len(key) {
		return ""
	}
	return fmt.Sprintf(": did you mean %q?", best)
}

// typeErrLine is how yaml.v3 starts each message of a *yaml.TypeError.
var typeErrLine = regexp.MustCompile("^line (\\d+): (.*?)(`[^`]*`)?( into .*)?$")

// typeErrors turns a decode's type errors into problems on their key paths.
func (k *keyCheck) typeErrors(err *yaml.TypeError) {
	for _, msg := range err.Errors {
		m := typeErrLine.FindStringSubmatch(msg)
		if m == nil {
			k.p.add("(file)", "%s", msg)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		value := strings.Trim(m[3], "`")
		path := "(file)"
		for _, v := range k.values[line] {
			if path == "(file)" || v.value == value {
				path = v.path
			}
		}
		k.p.addAt(path, line, "%q is not a valid value: expected %s", value, expected(m[4]))
	}
}

// expected turns yaml.v3's Go type names into words an operator knows.
func expected(into string) string {
	t := strings.TrimPrefix(strings.TrimSpace(into), "into ")
	switch {
	case strings.Contains(t, "Duration"):
		return `a duration such as "30s" or "10m"`
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "config."):
		return "a mapping of keys"
	}
	return "a " + t
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
