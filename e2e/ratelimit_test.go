package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
)

type answer struct {
	code       int
	errCode    string
	remaining  string
	limit      string
	retryAfter string
}

func request(t *testing.T, method, url string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return answer{code: resp.StatusCode, errCode: e.Error.Code, remaining: resp.Header.Get("X-RateLimit-Remaining"),
		limit: resp.Header.Get("X-RateLimit-Limit"), retryAfter: resp.Header.Get("Retry-After")}
}

// TestRateLimitAcrossTwoAPIProcesses: two api processes on one Redis, no
// proxy in front; one client hammers an anonymous route on both, with a
// forged X-Forwarded-For that changes every request. The limit holds in
// total (the route's 501 placeholder counts as allowed: limiting happens
// before the handler), the headers count down across both processes, and
// waiting Retry-After lets the next request through.
func TestRateLimitAcrossTwoAPIProcesses(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	env := map[string]string{"DATABASE_URL": testkit.PostgresSchemaURL(t), "REDIS_URL": r.URL,
		"RATE_LIMIT_ANON": "10/10s", "RATE_BLOCK_AFTER_VIOLATIONS": "off"}
	a := Start(t, "api", env)
	b := Start(t, "api", env)
	const limit = 10
	allowed, last := 0, limit
	var firstRefusal answer
	for i := 0; i < 3*limit; i++ {
		p := a
		if i%2 == 1 {
			p = b
		}
		ans := request(t, "GET", p.Base+"/api/v1/listings", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
		switch ans.code {
		case http.StatusOK:
			allowed++
			rem, err := strconv.Atoi(ans.remaining)
			if err != nil || ans.limit != strconv.Itoa(limit) || rem >= last {
				t.Errorf("request %d: limit %q remaining %q after %d", i, ans.limit, ans.remaining, last)
			}
			last = rem
		case http.StatusTooManyRequests:
			if ans.errCode != "rate_limited" || ans.remaining != "0" || ans.retryAfter == "" {
				t.Errorf("refusal %d: %+v", i, ans)
			}
			if firstRefusal.code == 0 {
				firstRefusal = ans
			}
		default:
			t.Fatalf("request %d: %+v", i, ans)
		}
	}
	t.Logf("%d of %d allowed across two processes", allowed, 3*limit)
	if allowed < limit || allowed > limit+1 {
		t.Fatalf("allowed %d, want %d (±1)", allowed, limit)
	}
	wait, err := strconv.Atoi(firstRefusal.retryAfter)
	if err != nil || wait < 1 || wait > 2 {
		t.Fatalf("Retry-After %q (10/10s earns one request a second)", firstRefusal.retryAfter)
	}
	// Drain what the hammering left, then honour Retry-After exactly.
	var ans answer
	for i := 0; i < 2*limit && ans.code != http.StatusTooManyRequests; i++ {
		ans = request(t, "GET", b.Base+"/api/v1/listings")
	}
	if ans.code != http.StatusTooManyRequests {
		t.Fatalf("never refused again: %+v", ans)
	}
	wait, _ = strconv.Atoi(ans.retryAfter)
	time.Sleep(time.Duration(wait) * time.Second)
	if ans := request(t, "GET", a.Base+"/api/v1/listings"); ans.code != http.StatusOK {
		t.Fatalf("after waiting Retry-After %ds: %+v", wait, ans)
	}
}

// TestRateLimitWithLocalCreditAcrossTwoAPIProcesses: the same hammering
// with a limit large enough for local credit (the default
// RATE_LIMIT_LOCAL_CREDIT): the processes allow requests without asking
// Redis while the bucket is far from empty, and still exactly the limit
// is allowed in total.
func TestRateLimitWithLocalCreditAcrossTwoAPIProcesses(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	env := map[string]string{"DATABASE_URL": testkit.PostgresSchemaURL(t), "REDIS_URL": r.URL,
		"RATE_LIMIT_ANON": "300/h", "RATE_BLOCK_AFTER_VIOLATIONS": "off"}
	a := Start(t, "api", env)
	b := Start(t, "api", env)
	const limit = 300
	allowed := 0
	for i := 0; i < 2*limit; i++ {
		p := a
		if i%2 == 1 {
			p = b
		}
		switch ans := request(t, "GET", p.Base+"/api/v1/listings"); ans.code {
		case http.StatusOK:
			allowed++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("request %d: %+v", i, ans)
		}
	}
	if allowed < limit || allowed > limit+1 {
		t.Fatalf("allowed %d with local credit, want %d (±1)", allowed, limit)
	}
}

// TestLimiterWhenRedisStops: with Redis gone, reads are served without
// limits, login fails closed with 503 and Retry-After, and readiness says so.
func TestLimiterWhenRedisStops(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	redis := startRedis(t, port)
	p := Start(t, "api", map[string]string{"DATABASE_URL": testkit.PostgresSchemaURL(t),
		"REDIS_URL": fmt.Sprintf("redis://127.0.0.1:%d/0", port), "RATE_LIMIT_ANON": "2/m"})
	p.WaitStatus("/health/readiness", 200, 5*time.Second)
	if ans := request(t, "GET", p.Base+"/api/v1/listings"); ans.code != http.StatusOK || ans.limit != "2" {
		t.Fatalf("with Redis: %+v", ans)
	}
	_ = redis.Process.Kill()
	_ = redis.Wait()
	p.WaitStatus("/health/readiness", 503, 10*time.Second)
	for i := 0; i < 4; i++ {
		if ans := request(t, "GET", p.Base+"/api/v1/listings"); ans.code != http.StatusOK || ans.limit != "" {
			t.Fatalf("read %d without Redis: %+v (must fail open)", i, ans)
		}
	}
	if ans := request(t, "POST", p.Base+"/api/v1/auth/login"); ans.code != http.StatusServiceUnavailable || ans.errCode != "unavailable" || ans.retryAfter != "5" {
		t.Fatalf("login without Redis: %+v (must fail closed)", ans)
	}
}
