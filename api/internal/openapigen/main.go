// Command openapigen renders api/openapi.yaml, the hand-maintained OpenAPI
// document, as the api/openapi.json the binary embeds and serves: validated
// here, at `go generate` time, so that the program carries no OpenAPI
// library (less code to load, a faster start, a smaller idle footprint).
// A test in package api fails when the JSON is stale.
//
//	go generate ./api
package main

import (
	"fmt"
	"os"

	"github.com/rentalportal/portal/api/internal/openapidoc"
)

func main() {
	yaml, err := os.ReadFile("openapi.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
	out, err := openapidoc.Render(yaml)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile("openapi.json", out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
}
