package testkit

import (
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
)

var assetRef = regexp.MustCompile(`(?i)<(?:script|link|img)\b[^>]*?\b(?:src|href)="([^"]+)"`)

// PageAssets fetches an HTML page and every script, stylesheet, icon and
// image it references on the same site, and fails the test unless each
// answers 200 with the content type its extension calls for. It catches
// the blank page of a single-page app mounted under a prefix, whose HTML
// loads but whose scripts 404 or come back as text/html. The client carries
// whatever authentication the page needs. It returns the page's HTML.
func PageAssets(t testing.TB, client *http.Client, pageURL string) string {
	t.Helper()
	html, ct := fetch(t, client, pageURL)
	if !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET %s: content type %q, want text/html", pageURL, ct)
	}
	base, _ := url.Parse(pageURL)
	n := 0
	for _, m := range assetRef.FindAllStringSubmatch(html, -1) {
		ref, err := base.Parse(m[1])
		if err != nil || ref.Host != base.Host {
			continue // another site (the page's CSP keeps the browser from it)
		}
		ext := path.Ext(ref.Path)
		want := mime.TypeByExtension(ext)
		if ext == ".ico" {
			want = "image/" // x-icon or vnd.microsoft.icon, both fine
		}
		if want == "" {
			continue
		}
		_, got := fetch(t, client, ref.String())
		if !strings.HasPrefix(got, strings.Split(want, ";")[0]) && !(ext == ".js" && strings.HasPrefix(got, "application/javascript")) {
			t.Fatalf("asset %s: content type %q, want %q", ref, got, want)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("page %s references no asset of its own:\n%s", pageURL, html)
	}
	return html
}

func fetch(t testing.TB, client *http.Client, u string) (body, contentType string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html,*/*")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %.300s", u, resp.StatusCode, b)
	}
	return string(b), resp.Header.Get("Content-Type")
}
