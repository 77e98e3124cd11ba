package api

import (
	"bytes"
	"testing"

	"github.com/rentalportal/portal/api/internal/openapidoc"
)

// TestOpenAPIJSONIsFresh: the JSON the binary serves is openapi.yaml,
// validated and rendered. Edit the YAML, then run `go generate ./api`.
func TestOpenAPIJSONIsFresh(t *testing.T) {
	t.Parallel()
	want, err := openapidoc.Render(openAPIYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, openAPIJSON) {
		t.Fatal("api/openapi.json is stale: run `go generate ./api` after editing api/openapi.yaml")
	}
}

func TestOpenAPIServersFromConfig(t *testing.T) {
	t.Parallel()
	servers, err := ParseServers("local=http://localhost:8080, production=https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := loadOpenAPI(servers)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc.json, []byte(`"servers":[{"description":"local","url":"http://localhost:8080"},{"description":"production","url":"https://api.example.com"}]`)) {
		t.Fatalf("servers not in the document: %.300s", doc.json)
	}
	if !bytes.Contains([]byte(doc.csp), []byte("connect-src 'self' http://localhost:8080 https://api.example.com")) {
		t.Fatalf("Swagger UI may not call the servers: %s", doc.csp)
	}
	for _, bad := range []string{"local", "x=ftp://h", "y=not a url"} {
		if _, err := ParseServers(bad); err == nil {
			t.Errorf("ParseServers(%q) accepted", bad)
		}
	}
}
