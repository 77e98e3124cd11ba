package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rentalportal/portal/blob"
	"github.com/rentalportal/portal/imaging/imagingbench"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// benchImaging: the three variants of a generated 12 MP JPEG by each
// pipeline of imagingbench (the production one and the libraries it was
// chosen over) as a ratio to the pure image/jpeg decode of the same file,
// rounds alternating; their quality (PSNR against CatmullRom from the full
// image); the peak RSS of one image task in this process; and then the
// real `rentalportal worker` process making the variants of one upload and
// of a burst of uploads, its peak RSS beside its idle RSS and the
// configured memory budget.
func benchImaging(ctx context.Context, env Env) ([]Row, error) {
	opt := imagingbench.Options{Burst: -1, Rounds: 5}
	burst := 50
	if env.Quick {
		opt.Rounds, burst = 1, 8
	}
	rep, err := imagingbench.Run(io.Discard, opt)
	if err != nil {
		return nil, err
	}
	dec := fmt.Sprintf("image/jpeg decode %s", msPrecise(rep.Decode))
	rows := []Row{{Metric: fmt.Sprintf("three variants of a %d×%d JPEG (%.1f MiB): best of %d rounds, median in brackets",
		rep.Width, rep.Height, float64(rep.FileBytes)/(1<<20), opt.Rounds),
		Value: "", Baseline: dec + " [" + msPrecise(rep.DecodeMedian) + "]"}}
	for i, p := range rep.Pipelines {
		minPSNR := math.Inf(1)
		for _, v := range p.PSNR {
			minPSNR = min(minPSNR, v)
		}
		r := Row{Metric: "  " + p.Name, Value: fmt.Sprintf("%s [%s]", msPrecise(p.Best), msPrecise(p.Median)),
			Baseline: dec, Ratio: fmt.Sprintf("%.2f× [%.2f×]", p.Ratio, p.RatioMedian)}
		q := Row{Metric: "    PSNR thumb/medium/large (after JPEG)", Value: fmt.Sprintf("%.1f/%.1f/%.1f dB (%.1f/%.1f/%.1f)",
			p.PSNR["thumb"], p.PSNR["medium"], p.PSNR["large"], p.PSNRJPEG["thumb"], p.PSNRJPEG["medium"], p.PSNRJPEG["large"]),
			Baseline: "CatmullRom from the full image"}
		if i == 0 { // the production pipeline carries the targets
			r.Target, r.Verdict = "≤ 1.40×", verdict(p.Ratio <= 1.4)
			q.Target, q.Verdict = "≥ 38 dB", verdict(minPSNR >= 38)
		}
		rows = append(rows, r, q)
	}
	task := rep.PeakRSSTask - rep.BaseRSS
	rows = append(rows, Row{Metric: "peak RSS of one image task (imaging.Process in this process), above the RSS before it",
		Value: mib(task), Baseline: fmt.Sprintf("RSS before %s, peak %s", mib(rep.BaseRSS), mib(rep.PeakRSSTask)),
		Target: "≤ 80 MiB", Verdict: verdict(task <= 80<<20)})
	if ctx.Err() != nil {
		return rows, ctx.Err()
	}
	wrows, err := imageWorker(ctx, env, burst)
	return append(rows, wrows...), err
}

// imageWorker runs the real worker on uploads of the test JPEG stored in
// its local blob folder: one upload alone, then a burst.
func imageWorker(ctx context.Context, env Env, burst int) ([]Row, error) {
	data, err := imagingbench.TestJPEG(4000, 3000)
	if err != nil {
		return nil, err
	}
	st, err := newStack(ctx, env, "bench_imaging", 14)
	if err != nil {
		return nil, err
	}
	defer st.close()
	blobs, err := blob.NewLocal(filepath.Join(st.dataDir, "blobs"), []byte(benchJWTSecret), "")
	if err != nil {
		return nil, err
	}
	m, err := seedMarket(ctx, st.db, "im", 0, 1)
	if err != nil {
		return nil, err
	}
	upload := func(i int) (string, error) {
		u := &store.Upload{ID: fmt.Sprintf("im-up-%d", i), OwnerID: m.owner, Kind: store.UploadKindImage, ContentType: "image/jpeg",
			Size: int64(len(data)), Status: store.UploadProcessing}
		u.ObjectKey = "uploads/" + m.owner + "/" + u.ID + "/original.jpg"
		if _, err := blobs.Put(ctx, u.ObjectKey, bytes.NewReader(data), blob.PutOptions{ContentType: "image/jpeg"}); err != nil {
			return "", err
		}
		return u.ID, store.CreateUpload(ctx, st.db, u)
	}
	ids := make([]string, burst+1)
	for i := range ids {
		if ids[i], err = upload(i); err != nil {
			return nil, err
		}
	}
	budget := int64(512) // IMAGE_MEMORY_BUDGET_MB's default, set explicitly
	w, _, err := st.startWorker(ctx, map[string]string{"IMAGE_MEMORY_BUDGET_MB": strconv.FormatInt(budget, 10)})
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // idle
	idle, _ := w.rss()
	if err := resetPeak(w); err != nil {
		return nil, err
	}
	oneTook, err := thumbnails(ctx, st, ids[:1])
	if err != nil {
		return nil, err
	}
	onePeak, err := w.status("VmHWM")
	if err != nil {
		return nil, err
	}
	if err := resetPeak(w); err != nil {
		return nil, err
	}
	burstTook, err := thumbnails(ctx, st, ids[1:])
	if err != nil {
		return nil, err
	}
	burstPeak, err := w.status("VmHWM")
	if err != nil {
		return nil, err
	}
	one := onePeak - idle
	return []Row{
		{Metric: "worker process: peak RSS making one upload's variants, above idle", Value: mib(one),
			Baseline: fmt.Sprintf("idle %s, peak %s", mib(idle), mib(onePeak)), Target: "≤ 80 MiB", Verdict: verdict(one <= 80<<20)},
		{Metric: "  one upload, task enqueued → ready", Value: msPrecise(oneTook)},
		{Metric: fmt.Sprintf("worker process: peak RSS under a burst of %d uploads", burst), Value: mib(burstPeak),
			Baseline: fmt.Sprintf("budget %d MiB (idle %s)", budget, mib(idle)), Ratio: ratio(float64(burstPeak), float64(budget<<20)),
			Target: "≤ budget", Verdict: verdict(burstPeak <= budget<<20)},
		{Metric: "  burst wall time", Value: fmt.Sprintf("%.1f s (%.1f uploads/s)", burstTook.Seconds(), float64(burst)/burstTook.Seconds())},
	}, nil
}

// thumbnails enqueues image:thumbnail for the uploads and waits until
// every one is ready.
func thumbnails(ctx context.Context, st *stack, ids []string) (time.Duration, error) {
	start := time.Now()
	msgs := make([]tasks.Message, len(ids))
	for i, id := range ids {
		m, err := tasks.Encode(tasks.Thumbnail{UploadID: id})
		if err != nil {
			return 0, err
		}
		msgs[i] = m
		t, err := m.Task()
		if err != nil {
			return 0, err
		}
		if _, err := st.client.EnqueueContext(ctx, t); err != nil {
			return 0, err
		}
	}
	for {
		q, args, err := store.In(st.db, `SELECT count(*) FROM uploads WHERE id IN (?) AND status IN ('ready', 'failed')`, ids)
		if err != nil {
			return 0, err
		}
		var done int
		if err := st.db.GetContext(ctx, &done, q, args...); err != nil {
			return 0, err
		}
		if done == len(ids) {
			break
		}
		if time.Since(start) > 5*time.Minute || ctx.Err() != nil {
			return 0, fmt.Errorf("%d of %d uploads done after %s", done, len(ids), time.Since(start).Round(time.Second))
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	var failed int
	q, args, _ := store.In(st.db, `SELECT count(*) FROM uploads WHERE id IN (?) AND status = 'failed'`, ids)
	if err := st.db.GetContext(ctx, &failed, q, args...); err != nil || failed > 0 {
		return took, fmt.Errorf("%d uploads failed (%v)", failed, err)
	}
	return took, nil
}

// resetPeak resets the kernel's high-water mark of the process's RSS to
// its current RSS (Linux clear_refs 5).
func resetPeak(p *proc) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid()), []byte("5"), 0)
}
