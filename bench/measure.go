package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/store"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times
// (100 on every Linux platform Go supports outside of exotic builds).
const clockTicks = 100

// procStat reads utime+stime of a process and, with children, also the
// CPU of its children it has reaped (cutime+cstime).
func procStat(pid int, children bool) (cpu time.Duration, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'. f[0] is the state (field 3 of proc(5)).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	ticks := int64(0)
	last := 12 // utime, stime: fields 14, 15
	if children {
		last = 14 // and cutime, cstime: 16, 17
	}
	for i := 11; i <= last; i++ {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, ppid, true
}

// treeCPU is the CPU of a process and all its children, live or reaped:
// for PostgreSQL, the postmaster and its backends (connections come and go,
// and a backend's CPU moves to the postmaster's cutime when it exits).
func treeCPU(root int) time.Duration {
	total, _, ok := procStat(root, true)
	if !ok {
		return 0
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		if cpu, ppid, ok := procStat(pid, false); ok && ppid == root {
			total += cpu
		}
	}
	return total
}

// postmasterPID finds the local PostgreSQL server's main process: the
// parent of this connection's backend. 0 when PostgreSQL is not on this
// host (or /proc is not readable).
func postmasterPID(ctx context.Context, db *store.DB) int {
	var backend int
	if err := db.GetContext(ctx, &backend, `SELECT pg_backend_pid()`); err != nil {
		return 0
	}
	if _, ppid, ok := procStat(backend, false); ok {
		return ppid
	}
	return 0
}

// meter attributes the machine's CPU during a stretch of load to the
// parts of the system: this process (load generator and any in-process
// server), the child processes under test, PostgreSQL, Redis; and counts
// what PostgreSQL wrote (transactions that took an ID, WAL bytes).
type meter struct {
	db         *store.DB
	rc         redis.UniversalClient
	postmaster int
	procs      []meterProc
}

type meterProc struct {
	name string
	p    *proc
}

func newMeter(ctx context.Context, db *store.DB, rc redis.UniversalClient) *meter {
	return &meter{db: db, rc: rc, postmaster: postmasterPID(ctx, db)}
}

// watch adds a child process (the API, a worker) under a name.
func (m *meter) watch(name string, p *proc) *meter {
	m.procs = append(m.procs, meterProc{name, p})
	return m
}

type meterSample struct {
	at       time.Time
	self, pg time.Duration
	redis    float64
	procs    []time.Duration
	xid, wal int64
}

func (m *meter) sample(ctx context.Context) meterSample {
	s := meterSample{at: time.Now(), self: processCPU()}
	if m.postmaster > 0 {
		s.pg = treeCPU(m.postmaster)
	}
	_, s.redis, _ = redisStats(ctx, m.rc)
	for _, p := range m.procs {
		cpu, _, _ := procStat(p.p.pid(), false)
		s.procs = append(s.procs, cpu)
	}
	// The next transaction ID (reading it takes none) and the WAL
	// position: both exact at once, unlike pg_stat_* counters, which
	// backends flush lazily.
	var row struct {
		XID int64 `db:"xid"`
		WAL int64 `db:"wal"`
	}
	if err := m.db.GetContext(ctx, &row, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid,
		(pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS wal`); err == nil {
		s.xid, s.wal = row.XID, row.WAL
	}
	return s
}

// usage is what one stretch cost, from two samples.
type usage struct {
	elapsed  time.Duration
	names    []string
	procs    []time.Duration
	self, pg time.Duration
	redis    time.Duration
	xacts    int64
	wal      int64
	pgLocal  bool
}

func (m *meter) since(ctx context.Context, a meterSample) usage {
	b := m.sample(ctx)
	u := usage{elapsed: b.at.Sub(a.at), self: b.self - a.self, pg: b.pg - a.pg,
		redis: time.Duration((b.redis - a.redis) * float64(time.Second)), xacts: b.xid - a.xid, wal: b.wal - a.wal,
		pgLocal: m.postmaster > 0}
	for i, p := range m.procs {
		u.names = append(u.names, p.name)
		u.procs = append(u.procs, b.procs[i]-a.procs[i])
	}
	return u
}

func (u *usage) add(o usage) {
	if u.names == nil {
		u.names = o.names
		u.procs = make([]time.Duration, len(o.procs))
	}
	u.elapsed += o.elapsed
	for i := range o.procs {
		u.procs[i] += o.procs[i]
	}
	u.self += o.self
	u.pg += o.pg
	u.redis += o.redis
	u.xacts += o.xacts
	u.wal += o.wal
	u.pgLocal = u.pgLocal || o.pgLocal
}

// cores says how many cores each part kept busy on average, e.g.
// "api 0.92 · postgres 0.61 · redis 0.08 · bench 0.35 (of 2)".
func (u usage) cores() string {
	if u.elapsed <= 0 {
		return "-"
	}
	return u.each(func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()/u.elapsed.Seconds()) }) +
		fmt.Sprintf(" (of %d)", numCPU())
}

// cpuPerOp says how much CPU each part spent per operation, e.g.
// "api 410 µs · postgres 520 µs · redis 70 µs · bench 90 µs".
func (u usage) cpuPerOp(n int) string {
	if n <= 0 {
		return "-"
	}
	return u.each(func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Microseconds())/float64(n)) })
}

// each formats the CPU time of every part with f: the processes under
// test, PostgreSQL when local, Redis and this process, in that order.
func (u usage) each(f func(time.Duration) string) string {
	var parts []string
	for i, name := range u.names {
		parts = append(parts, name+" "+f(u.procs[i]))
	}
	if u.pgLocal {
		parts = append(parts, "postgres "+f(u.pg))
	}
	parts = append(parts, "redis "+f(u.redis), "bench "+f(u.self))
	return strings.Join(parts, " · ")
}

// perOp says what PostgreSQL did per operation: write transactions and
// WAL bytes.
func (u usage) perOp(n int) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f xact, %.1f kB WAL", float64(u.xacts)/float64(n), float64(u.wal)/float64(n)/1024)
}

// activity samples what PostgreSQL's client backends are doing while a
// load runs (pg_stat_activity every 50 ms: a sample costs PostgreSQL
// about 0.6 ms, so 1 % of a core): running, waiting on the WAL
// flush (commit latency), on a lock, or idle in a transaction (waiting
// for the application between statements). Averages over the samples say
// where the time of a request is spent on the database side.
type activity struct {
	stop   chan struct{}
	done   chan struct{}
	counts map[string]float64
	n      int
}

func watchActivity(ctx context.Context, db *store.DB) *activity {
	a := &activity{stop: make(chan struct{}), done: make(chan struct{}), counts: map[string]float64{}}
	go func() {
		defer close(a.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var rows []struct {
				State string `db:"state"`
				N     int    `db:"n"`
			}
			err := db.SelectContext(ctx, &rows, `SELECT CASE
					WHEN state = 'active' AND wait_event_type IS NULL THEN 'running'
					WHEN state = 'active' THEN wait_event_type || ':' || wait_event
					ELSE state END AS state, count(*) AS n
				FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
				GROUP BY 1`)
			if err != nil {
				continue
			}
			a.n++
			for _, r := range rows {
				a.counts[r.State] += float64(r.N)
			}
		}
	}()
	return a
}

// finish stops sampling and says how many backends were in each state on
// average, busiest first, leaving out idle connections.
func (a *activity) finish() string {
	close(a.stop)
	<-a.done
	if a.n == 0 {
		return "-"
	}
	type kv struct {
		k string
		v float64
	}
	var all []kv
	for k, v := range a.counts {
		if k != "idle" {
			all = append(all, kv{k, v / float64(a.n)})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for _, e := range all {
		if e.v >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.1f", e.k, e.v))
		}
	}
	if len(parts) == 0 {
		return "all idle"
	}
	return strings.Join(parts, " · ")
}

// diskProbe times an 8 kB write and fsync of a file of its own every
// diskProbeEvery while a load runs: how long a commit's WAL flush would have
// waited on the disk meanwhile. This machine's virtual disk stalls now and
// then for up to a second (iowait 40-50 %, a few MB/s written), and every
// durable commit waits with it; the probe tells such a stall from a slow
// program. Its own load, 20 fsyncs (160 kB) a second, is small beside the
// database's (a WAL flush per commit).
const diskProbeEvery = 50 * time.Millisecond

var diskProbeLabel = fmt.Sprintf("8 kB write + fsync every %s (a stall here stalls every commit)", diskProbeEvery)

type diskProbe struct {
	once sync.Once
	stop chan struct{}
	done chan struct{}
	lat  []time.Duration
	err  error
}

// startDiskProbe starts probing a file in dir (on the disk the database
// writes to, for a local database).
func startDiskProbe(dir string) *diskProbe {
	p := &diskProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		f, err := os.CreateTemp(dir, "diskprobe-*")
		if err != nil {
			p.err = err
			return
		}
		defer os.Remove(f.Name())
		defer f.Close()
		buf := make([]byte, 8<<10)
		t := time.NewTicker(diskProbeEvery)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			start := time.Now()
			if _, err := f.WriteAt(buf, 0); err != nil {
				p.err = err
				return
			}
			if err := f.Sync(); err != nil {
				p.err = err
				return
			}
			p.lat = append(p.lat, time.Since(start))
		}
	}()
	return p
}

// finish stops the probe (once) and adds its samples to lat (an error, if
// any, to err).
func (p *diskProbe) finish(lat *[]time.Duration, err *error) {
	p.once.Do(func() { close(p.stop) })
	<-p.done
	*lat = append(*lat, p.lat...)
	if p.err != nil && *err == nil {
		*err = p.err
	}
}

// describeDisk: "fsync p99 X, max Y" of a probe's samples.
func describeDisk(lat []time.Duration, err error) string {
	switch {
	case err != nil:
		return "probe failed: " + err.Error()
	case len(lat) == 0:
		return "no sample"
	}
	return fmt.Sprintf("fsync p99 %s, max %s", msPrecise(percentile(lat, 0.99)), msPrecise(slices.Max(lat)))
}
