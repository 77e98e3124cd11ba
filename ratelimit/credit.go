package ratelimit

import (
	"sync"
	"time"
)

// Local credit: a subject with plenty of room in its bucket need not ask
// Redis about every request. When Redis allows a request and answers that
// the bucket still holds at least creditShare times more than the credit,
// this process may allow the subject's next few requests (at most
// Config.LocalCredit, for at most creditTTL) on its own, and counts them in
// Redis with the subject's next request that asks (the script spends them
// before it judges that request, and never refuses them). So:
//
//   - near its limit, a subject asks Redis on every request, and the
//     limit holds across replicas as exactly as without credit: credit is
//     only ever a small share (1/creditShare) of what the bucket held, so
//     the credits all replicas hold at once fit in it unless there are
//     creditShare replicas;
//   - a heavy subject far from its limit costs Redis one round trip per
//     credit instead of one per request;
//   - between two requests that count what was allowed on credit, a
//     process allows at most LocalCredit on its own, however many answers
//     of concurrent requests it gets;
//   - what a process allowed on credit and never reported (it stopped, or
//     the subject went quiet until the entry was swept) is not counted: at
//     most LocalCredit requests, which the bucket had room for;
//   - a block, a reset or another replica's requests are seen at the
//     latest when the credit runs out or expires (creditTTL);
//   - the headers of a request allowed on credit count down from the last
//     answer of Redis (refills since are not added; they are at the next).
//
// Login and register never get credit: their limits are the brake on
// password guessing and account farming, and are asked every time.
const (
	creditShare = 32
	creditTTL   = time.Second
	// creditSweepEvery: every so many grants, entries expired for longer
	// than creditTTL are dropped (with whatever they did not report).
	creditSweepEvery = 1024
)

// creditBook holds the credit of the subjects this process has any.
type creditBook struct {
	max int

	mu      sync.Mutex
	entries map[string]*credit
	grants  int
}

// credit is one subject's (policy and subject) credit.
type credit struct {
	left       int           // requests it may still allow on its own
	used       int           // allowed on credit, not yet sent to Redis
	inflight   int           // allowed on credit, sent to Redis, not yet answered
	remaining  int           // the bucket's remaining as last answered, less local use
	resetAfter time.Duration // the bucket's reset as last answered, plus local use
	interval   time.Duration // the limit's emission interval
	at         time.Time     // when Redis answered
	expires    time.Time
}

func newCreditBook(max int) *creditBook {
	if max <= 0 {
		return nil
	}
	return &creditBook{max: max, entries: map[string]*credit{}}
}

// take allows one request on credit if the subject has any left; the
// decision's remaining and reset count down from Redis's last answer.
func (b *creditBook) take(key string, now time.Time) (remaining int, resetAfter time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[key]
	if e == nil || e.left == 0 || !now.Before(e.expires) {
		return 0, 0, false
	}
	e.left--
	e.used++
	e.remaining--
	e.resetAfter += e.interval
	return e.remaining, max(e.resetAfter-now.Sub(e.at), 0), true
}

// owed hands the requests allowed on credit and not yet counted to the
// caller, who counts them in Redis with its own request (and settles them
// with grant, withdraw or giveBack when answered); what credit is left is
// withdrawn (the answer to that request grants anew).
func (b *creditBook) owed(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[key]
	if e == nil {
		return 0
	}
	n := e.used
	e.used, e.left = 0, 0
	e.inflight += n
	return n
}

// giveBack settles a request that could not count its owed ones (the round
// trip failed, or the subject is blocked and its bucket was not touched):
// the next request that asks counts them. No credit meanwhile.
func (b *creditBook) giveBack(key string, pre int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[key]
	if e == nil {
		if pre == 0 {
			return
		}
		e = &credit{}
		b.entries[key] = e
	}
	e.inflight = max(e.inflight-pre, 0)
	e.used += pre
	e.left = 0
}

// withdraw settles a request that was refused: no credit.
func (b *creditBook) withdraw(key string, pre int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.entries[key]; e != nil {
		e.inflight = max(e.inflight-pre, 0)
		e.left = 0
	}
}

// grant settles a request Redis allowed, which answered the bucket's
// remaining and reset, and gives the subject credit: LocalCredit requests,
// or fewer, so that the credit is at most 1/creditShare of the remaining.
// What this process allowed on credit that the answer may not include
// (used since, or in flight with other requests) counts against both:
// between two answers that count them, the process allows at most
// LocalCredit on its own, however many answers of concurrent requests
// arrive meanwhile.
func (b *creditBook) grant(key string, pre, remaining int, resetAfter, interval time.Duration, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[key]
	if e == nil {
		if remaining/creditShare <= 0 {
			return
		}
		e = &credit{}
		b.entries[key] = e
	}
	e.inflight = max(e.inflight-pre, 0)
	unseen := e.used + e.inflight
	n := min(b.max, (remaining-unseen)/creditShare)
	e.left = max(n-unseen, 0)
	e.remaining, e.resetAfter = remaining-unseen, resetAfter+time.Duration(unseen)*interval
	e.interval, e.at, e.expires = interval, now, now.Add(creditTTL)
	if e.left == 0 && unseen == 0 {
		delete(b.entries, key)
		return
	}
	if b.grants++; b.grants >= creditSweepEvery {
		b.grants = 0
		for k, e := range b.entries {
			if now.Sub(e.expires) > creditTTL && e.inflight == 0 {
				delete(b.entries, k)
			}
		}
	}
}
