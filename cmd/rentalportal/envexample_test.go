package main

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEnvExampleListsEveryVariable keeps .env.example true: every variable
// the Config struct reads is listed (commented out or set) with its default,
// and nothing else is.
func TestEnvExampleListsEveryVariable(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "# ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " #") || strings.ToUpper(k) != k {
			continue
		}
		listed[k] = v
	}
	rt := reflect.TypeOf(Config{})
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		key := f.Tag.Get("env")
		if key == "" || key == "-" {
			continue
		}
		v, ok := listed[key]
		if !ok {
			t.Errorf(".env.example does not list %s", key)
			continue
		}
		if def := f.Tag.Get("envDefault"); v != def {
			t.Errorf(".env.example: %s=%q, but its default is %q", key, v, def)
		}
		delete(listed, key)
	}
	for k := range listed {
		t.Errorf(".env.example lists %s, which the program does not read", k)
	}
}
