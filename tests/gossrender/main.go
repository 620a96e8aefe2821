// gossrender renders one goss spec file the way goss does before it parses
// it: Go's text/template over {"Vars": <vars>, "Env": <environment>}, with the
// sprig/goss functions our specs use (and only those: a spec calling any
// other function fails to parse here). Vars come as JSON on stdin; the
// rendered YAML goes to stdout. Built by tests/test_goss_specs.py.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"regexp"
	"strings"
	"text/template"
)

func empty(v interface{}) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return r.Len() == 0
	case reflect.Bool:
		return !r.Bool()
	case reflect.Float64, reflect.Int:
		return r.IsZero()
	}
	return false
}

var funcs = template.FuncMap{
	// sprig
	"default": func(d interface{}, given ...interface{}) interface{} {
		if len(given) == 0 || empty(given[0]) {
			return d
		}
		return given[0]
	},
	"contains":  func(substr, s string) bool { return strings.Contains(s, substr) },
	"splitList": func(sep, s string) []string { return strings.Split(s, sep) },
	"trim":      strings.TrimSpace,
	"base":      path.Base,
	// goss
	"regexMatch": func(re, s string) (bool, error) { return regexp.MatchString(re, s) },
	"toLower":    strings.ToLower,
	"toUpper":    strings.ToUpper,
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gossrender SPEC < vars.json")
		os.Exit(2)
	}
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	raw, _ := io.ReadAll(os.Stdin)
	var vars map[string]interface{}
	if err := json.Unmarshal(raw, &vars); err != nil {
		fmt.Fprintln(os.Stderr, "vars:", err)
		os.Exit(1)
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		parts := strings.SplitN(kv, "=", 2)
		env[parts[0]] = parts[1]
	}
	// goss renders with missingkey=error: every variable a spec reads must be given.
	tmpl, err := template.New(path.Base(os.Args[1])).Funcs(funcs).Option("missingkey=error").Parse(string(text))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := tmpl.Execute(os.Stdout, map[string]interface{}{"Vars": vars, "Env": env}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
