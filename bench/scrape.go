package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// scrape reads a process's /metrics (Prometheus text format) into
// series → value, the series being the line's name and labels as written.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// histogramShares describes how a histogram's observations between two
// scrapes fall into its buckets: "n=2000: ≤5ms 61% · ≤10ms 93% · ...",
// for the series of name whose labels contain every one of match. It
// stops at the first bucket that holds them all.
func histogramShares(before, after map[string]float64, name string, match ...string) string {
	type bucket struct {
		le    float64
		count float64
	}
	var bs []bucket
	for series, v := range after {
		if !strings.HasPrefix(series, name+"_bucket{") || !containsAll(series, match) {
			continue
		}
		i := strings.Index(series, `le="`)
		if i < 0 {
			continue
		}
		leText := series[i+4 : i+4+strings.IndexByte(series[i+4:], '"')]
		le, err := strconv.ParseFloat(leText, 64)
		if err != nil {
			continue // +Inf
		}
		bs = append(bs, bucket{le, v - before[series]})
	}
	if len(bs) == 0 {
		return "-"
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := 0.0
	for series, v := range after {
		if strings.HasPrefix(series, name+"_count") && containsAll(series, match) {
			total += v - before[series]
		}
	}
	if total == 0 {
		return "none"
	}
	parts := []string{fmt.Sprintf("n=%.0f:", total)}
	for _, b := range bs {
		if b.count == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("≤%s %.1f%%", seconds(b.le), 100*b.count/total))
		if b.count >= total {
			break
		}
	}
	return strings.Join(parts, " ")
}

// counterDelta sums the increase of the series of name matching labels.
func counterDelta(before, after map[string]float64, name string, match ...string) float64 {
	d := 0.0
	for series, v := range after {
		if (series == name || strings.HasPrefix(series, name+"{")) && containsAll(series, match) {
			d += v - before[series]
		}
	}
	return d
}

func containsAll(s string, subs []string) bool {
	for _, m := range subs {
		if !strings.Contains(s, m) {
			return false
		}
	}
	return true
}

func seconds(s float64) string {
	if s < 1 {
		return strconv.FormatFloat(s*1000, 'f', -1, 64) + "ms"
	}
	return strconv.FormatFloat(s, 'f', -1, 64) + "s"
}
