package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func TestRegisterLoginMe(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		a := newTestAPI(t, db)
		r := a.do("POST", "/api/v1/auth/register", "", map[string]string{
			"email": "Grace@Example.COM", "password": "Compilers-1952", "name": "Grace", "role": "owner"})
		expect(t, r, http.StatusCreated)
		var tok api.TokenResponse
		r.decode(t, &tok)
		if tok.TokenType != "Bearer" || tok.ExpiresIn != 900 || tok.AccessToken == "" ||
			tok.User.Email != "grace@example.com" || tok.User.Role != "owner" || tok.User.ID == "" {
			t.Fatalf("register answer = %+v", tok)
		}
		if strings.Contains(string(r.Body), "password") {
			t.Fatalf("the answer mentions the password: %s", r.Body)
		}

		me := a.do("GET", "/api/v1/users/me", tok.AccessToken, nil)
		expect(t, me, http.StatusOK)
		var u api.UserView
		me.decode(t, &u)
		if u.ID != tok.User.ID || u.Name != "Grace" {
			t.Fatalf("me = %+v", u)
		}

		// The same email in other letters is taken.
		dup := a.do("POST", "/api/v1/auth/register", "", map[string]string{
			"email": "grace@EXAMPLE.com", "password": "Compilers-1952", "name": "G2", "role": "renter"})
		expect(t, dup, http.StatusConflict)
		if e := dup.errorBody(t); e.Code != "duplicate" || e.RequestID == "" {
			t.Fatalf("duplicate answer = %+v", e)
		}

		// Login: case-insensitive email; a wrong password and an unknown
		// email get the very same answer.
		if a.login("GRACE@example.com", "Compilers-1952") == "" {
			t.Fatal("no token")
		}
		wrong := a.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "grace@example.com", "password": "Compilers-1953"})
		unknown := a.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "nobody@example.com", "password": "Compilers-1952"})
		expect(t, wrong, http.StatusUnauthorized)
		expect(t, unknown, http.StatusUnauthorized)
		we, ue := wrong.errorBody(t), unknown.errorBody(t)
		if we.Code != ue.Code || we.Message != ue.Message || we.Code != "unauthorized" {
			t.Fatalf("login errors differ: %+v vs %+v", we, ue)
		}

		// Tokens: none, garbage, or signed with another key are all 401.
		for _, token := range []string{"", "garbage", tok.AccessToken + "x"} {
			if r := a.do("GET", "/api/v1/users/me", token, nil); r.Status != http.StatusUnauthorized {
				t.Errorf("token %q: status %d", token, r.Status)
			}
		}
	})
}

func TestRegisterRejectsAdminRole(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testkit.SQLite(t))
	r := a.do("POST", "/api/v1/auth/register", "", map[string]string{
		"email": "mallory@example.com", "password": "Let-me-in-99", "name": "Mallory", "role": "admin"})
	expect(t, r, http.StatusBadRequest)
	e := r.errorBody(t)
	if e.Code != "validation_failed" || len(e.Details) != 1 || e.Details[0].Field != "role" {
		t.Fatalf("admin self-registration: %+v", e)
	}
	if n := a.count(`SELECT count(*) FROM users`); n != 0 {
		t.Fatalf("%d users were created", n)
	}
}

// TestBodyErrors checks the error shape of every way a body can be wrong.
func TestBodyErrors(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testkit.SQLite(t))
	valid := `{"email":"a@example.com","password":"Abcdefghij1","name":"A","role":"renter"}`
	cases := []struct {
		name        string
		contentType string
		body        string
		status      int
		code        string
		fields      []string // details' fields, in order
	}{
		{"not json", "text/plain", valid, 415, "unsupported_media_type", nil},
		{"json with charset is fine", "application/json; charset=utf-8", valid, 201, "", nil},
		{"empty", "application/json", "", 400, "invalid", nil},
		{"malformed", "application/json", `{"email": `, 400, "invalid", nil},
		{"syntax error", "application/json", `{"email" "x"}`, 400, "invalid", nil},
		{"two objects", "application/json", valid + valid, 400, "invalid", nil},
		{"array", "application/json", `[1,2]`, 400, "invalid", nil},
		{"wrong type", "application/json", `{"email": 12}`, 400, "invalid", []string{"email"}},
		{"unknown field", "application/json", `{"email":"b@example.com","is_admin":true}`, 400, "invalid", []string{"is_admin"}},
		{"too large", "application/json", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "too_large", nil},
		{"too large, chunked", "application/json", "", 413, "too_large", nil}, // body: see below
		{"every field wrong", "application/json", `{"email":"not-an-email","password":"short","name":"   ","role":"boss"}`,
			400, "validation_failed", []string{"email", "name", "role", "password"}},
		{"all missing", "application/json", `{}`, 400, "validation_failed", []string{"email", "password", "name", "role"}},
		{"one class password", "application/json", `{"email":"c@example.com","password":"abcdefghijkl","name":"C","role":"owner"}`,
			400, "validation_failed", []string{"password"}},
		{"password is the email", "application/json", `{"email":"dd1@example.com","password":"DD1@example.com","name":"D","role":"owner"}`,
			400, "validation_failed", []string{"password"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body any = c.body
			if strings.HasSuffix(c.name, "chunked") {
				body = struct{ io.Reader }{strings.NewReader(`{"name":"` + strings.Repeat("x", 70<<10) + `"}`)}
			}
			r := a.doType("POST", "/api/v1/auth/register", "", c.contentType, body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if c.code == "" {
				return
			}
			e := r.errorBody(t)
			if e.Code != c.code || e.Message == "" || e.RequestID == "" {
				t.Fatalf("error = %+v, want code %s", e, c.code)
			}
			if c.fields == nil {
				return
			}
			var got []string
			for _, d := range e.Details {
				got = append(got, d.Field)
				if d.Message == "" {
					t.Errorf("detail %s has no message", d.Field)
				}
			}
			if strings.Join(got, ",") != strings.Join(c.fields, ",") {
				t.Fatalf("detail fields = %v, want %v (%s)", got, c.fields, r.Body)
			}
		})
	}
}
