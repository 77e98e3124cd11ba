package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
	swaggerfiles "github.com/swaggo/files/v2"

	"github.com/rentalportal/portal"
)

// The OpenAPI document of the whole HTTP surface, maintained by hand as
// openapi.yaml and rendered (validated) into openapi.json by `go generate`;
// the binary serves the JSON. Tests (api/openapitest) hold the code to it:
// every route is in it, every response matches it, and the JSON is fresh.
//
//go:generate go run ./internal/openapigen
//go:embed openapi.yaml
var openAPIYAML []byte

//go:embed openapi.json
var openAPIJSON []byte

// OpenAPIYAML returns the document as maintained, with its placeholder
// servers.
func OpenAPIYAML() []byte { return bytes.Clone(openAPIYAML) }

// OpenAPIServer is one entry of the document's servers list.
type OpenAPIServer struct {
	Name string
	URL  string
}

// ParseServers reads OPENAPI_SERVERS: comma-separated name=url pairs, e.g.
// "local=http://localhost:8080,production=https://api.example.com". The
// first is Swagger UI's default. A URL must be absolute (http or https) or
// a path starting with /.
func ParseServers(spec string) ([]OpenAPIServer, error) {
	var out []OpenAPIServer
	for _, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, raw, ok := strings.Cut(entry, "=")
		name, raw = strings.TrimSpace(name), strings.TrimSpace(raw)
		if !ok || name == "" || raw == "" {
			return nil, fmt.Errorf("%q: want name=url", entry)
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https") ||
			(u.Scheme == "" && !strings.HasPrefix(raw, "/")) || (u.Scheme != "" && u.Host == "") {
			return nil, fmt.Errorf("%s: %q is not an http(s) URL or a /path", name, raw)
		}
		out = append(out, OpenAPIServer{Name: name, URL: strings.TrimRight(raw, "/")})
	}
	return out, nil
}

// openAPIDocument is the document served at /api/openapi.json.
type openAPIDocument struct {
	json []byte
	// csp of the Swagger UI page: it may call the configured servers.
	csp string
}

// loadOpenAPI renders the document with its servers; an invalid document
// stops the server from starting.
func loadOpenAPI(servers []OpenAPIServer) (*openAPIDocument, error) {
	base := openAPIJSON
	connect := []string{"'self'"}
	out := base
	if len(servers) > 0 {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(base, &top); err != nil {
			return nil, fmt.Errorf("openapi.yaml: %w", err)
		}
		list := make([]map[string]string, 0, len(servers))
		for _, s := range servers {
			u := s.URL
			if u == "" {
				u = "/"
			}
			list = append(list, map[string]string{"url": u, "description": s.Name})
			if pu, err := url.Parse(s.URL); err == nil && pu.Host != "" {
				connect = append(connect, pu.Scheme+"://"+pu.Host)
			}
		}
		var err error
		if top["servers"], err = json.Marshal(list); err != nil {
			return nil, err
		}
		if out, err = json.Marshal(top); err != nil {
			return nil, err
		}
	}
	csp := strings.Replace(cspHTML, "connect-src 'self'", "connect-src "+strings.Join(connect, " "), 1)
	return &openAPIDocument{json: out, csp: csp}, nil
}

func (s *Server) openAPI(c *gin.Context) {
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "application/json; charset=utf-8", s.openapi.json)
}

// swaggerIndex is Swagger UI's page; its assets come from the embedded
// distribution (github.com/swaggo/files/v2), so it works offline.
const swaggerIndex = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Rental Portal API · Swagger UI</title>
<link rel="stylesheet" type="text/css" href="/api/docs/swagger-ui.css">
<link rel="stylesheet" type="text/css" href="/api/docs/index.css">
<link rel="icon" type="image/png" href="/api/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/api/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
<script src="/api/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
<script src="/api/docs/swagger-initializer.js" charset="UTF-8"></script>
</body>
</html>
`

// swaggerInitializer configures Swagger UI: our document, the bearer token
// kept across reloads (persistAuthorization, in the browser's local
// storage), and no call to the public validator (offline, and private).
const swaggerInitializer = `window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    validatorUrl: null,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  });
};
`

// swaggerUI serves /api/docs and its assets under /api/docs/.
func (s *Server) swaggerUI(c *gin.Context) {
	file := strings.TrimPrefix(c.Param("file"), "/")
	c.Header("Content-Security-Policy", s.openapi.csp)
	switch file {
	case "", "index.html":
		c.Header("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(swaggerIndex))
		return
	case "swagger-initializer.js":
		c.Header("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "text/javascript; charset=utf-8", []byte(swaggerInitializer))
		return
	}
	if strings.Contains(file, "..") || path.Clean("/"+file) != "/"+file {
		renderError(c, portal.Errorf(portal.ENOTFOUND, "no such file"))
		return
	}
	if _, err := fs.Stat(swaggerfiles.FS, file); err != nil {
		renderError(c, portal.Errorf(portal.ENOTFOUND, "no such file"))
		return
	}
	c.Header("Cache-Control", "public, max-age=86400")
	c.FileFromFS(file, http.FS(swaggerfiles.FS))
}
