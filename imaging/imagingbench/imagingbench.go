// Package imagingbench measures the imaging pipeline for `make bench`: the
// time to make three variants of a 12-megapixel JPEG as a ratio to the pure
// image/jpeg decode of the same file measured in the same run, the quality
// (PSNR against a CatmullRom reference scaled from the full image), the same
// figures for nfnt/resize and golang.org/x/image/draw pipelines, the peak RSS
// of one task, and the peak RSS of a burst of uploads through the
// memory-budget limiter. It is self-contained: the test image is generated.
package imagingbench

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nfnt/resize"
	"golang.org/x/image/draw"

	"github.com/rentalportal/portal/imaging"
)

// Options tune Run.
type Options struct {
	Width, Height int   // test image (0: 4000×3000, 12 MP)
	Rounds        int   // timed rounds of each pipeline (0: 5)
	Burst         int   // uploads in the burst (0: 50; <0 skips it)
	BurstWorkers  int   // concurrent image tasks (0: imaging.Slots of the budget, as the worker sizes its images queue)
	BudgetBytes   int64 // memory budget of the burst (0: 512 MiB, the worker's default)
	Quality       int   // JPEG quality of the variants (0: 85)
}

func (o *Options) defaults() {
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = 4000, 3000
	}
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	if o.Burst == 0 {
		o.Burst = 50
	}
	if o.BudgetBytes <= 0 {
		o.BudgetBytes = 512 << 20
	}
	if o.BurstWorkers <= 0 {
		o.BurstWorkers = imaging.Slots(o.BudgetBytes, imaging.DefaultSpecs[0].LongEdge)
	}
	if o.Quality <= 0 {
		o.Quality = 85
	}
}

// Report is what Run measured.
type Report struct {
	Width, Height int
	FileBytes     int
	Decode        time.Duration // fastest pure image/jpeg decode of the rounds
	DecodeMedian  time.Duration
	Pipelines     []Pipeline
	PeakRSSTask   int64 // VmHWM during one task, whole process
	BaseRSS       int64 // RSS just before it
	BurstPeakRSS  int64
	BurstBaseRSS  int64
	Burst         int
	BurstWorkers  int
	BudgetBytes   int64
	BurstWall     time.Duration
	MaxInFlight   int
}

// Pipeline is one way of making the three variants.
type Pipeline struct {
	Name   string
	Best   time.Duration // fastest round: decode + scale + encode of all three variants
	Median time.Duration
	// Ratio is Best / Report.Decode: the fastest rounds are the ones the
	// other processes on the machine disturbed least, and the rounds of
	// decode and pipelines alternate so both see the same machine.
	Ratio       float64
	RatioMedian float64            // Median / Report.DecodeMedian
	PSNR        map[string]float64 // of the scaled pixels, before encoding
	// PSNRJPEG is of the variants as decoded from their JPEG (encoding loss
	// included).
	PSNRJPEG map[string]float64
}

// Run generates the test JPEG, measures every pipeline and writes a report.
func Run(w io.Writer, o Options) (*Report, error) {
	o.defaults()
	data, err := TestJPEG(o.Width, o.Height)
	if err != nil {
		return nil, err
	}
	rep := &Report{Width: o.Width, Height: o.Height, FileBytes: len(data), Burst: o.Burst,
		BurstWorkers: o.BurstWorkers, BudgetBytes: o.BudgetBytes}

	// Reference: CatmullRom from the full decoded image to each size.
	full, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	refs := References(full)
	full = nil

	pipes := Pipelines(o.Quality)

	// Decode and our pipelines alternate, Rounds times, so that machine
	// noise hits both alike; the slower comparisons run two rounds.
	var decodes []time.Duration
	times := make([][]time.Duration, len(pipes))
	for r := 0; r < o.Rounds; r++ {
		runtime.GC()
		t := time.Now()
		if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
			return nil, err
		}
		decodes = append(decodes, time.Since(t))
		for i, p := range pipes {
			if i >= 3 && r >= 2 {
				continue
			}
			runtime.GC()
			t := time.Now()
			if _, _, err := p.Run(data, false); err != nil {
				return nil, fmt.Errorf("%s: %w", p.Name, err)
			}
			times[i] = append(times[i], time.Since(t))
		}
	}
	rep.Decode, rep.DecodeMedian = slices.Min(decodes), median(decodes)
	for i, p := range pipes {
		pre, post, err := p.Run(data, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		pl := Pipeline{Name: p.Name, Best: slices.Min(times[i]), Median: median(times[i]), PSNR: map[string]float64{}, PSNRJPEG: map[string]float64{}}
		pl.Ratio = float64(pl.Best) / float64(rep.Decode)
		pl.RatioMedian = float64(pl.Median) / float64(rep.DecodeMedian)
		for name, ref := range refs {
			pl.PSNR[name] = PSNR(ref, pre[name])
			pl.PSNRJPEG[name] = PSNR(ref, post[name])
		}
		rep.Pipelines = append(rep.Pipelines, pl)
	}
	refs = nil

	// Peak RSS of one task: reset the high-water mark, run, read it.
	rep.BaseRSS, rep.PeakRSSTask = peakRSSOf(func() {
		_, _ = imaging.Process(data, imaging.Options{Quality: o.Quality})
	})
	if o.Burst > 0 {
		if err := burst(rep, data, o); err != nil {
			return nil, err
		}
	}
	rep.Print(w)
	return rep, nil
}

// NamedPipeline is one way of making the three variants of a JPEG.
type NamedPipeline struct {
	Name string
	// Run makes the three encoded variants; with keep it also returns the
	// scaled pixels and the decoded JPEGs (for PSNR, outside any timing).
	Run func(data []byte, keep bool) (pre, post map[string]image.Image, err error)
}

// Pipelines are the production pipeline (imaging.Process), two variants of
// its kernels, and the naive pipelines it is compared with:
// decode, nfnt/resize or x/image/draw from each variant to the next, encode.
func Pipelines(quality int) []NamedPipeline {
	return []NamedPipeline{
		{"imaging Area (production)", ours(imaging.Options{Quality: quality})},
		{"imaging Area, CatmullRom cascade", ours(imaging.Options{Quality: quality, CascadeFilter: imaging.CatmullRom})},
		{"imaging Triangle", ours(imaging.Options{Quality: quality, Filter: imaging.Triangle, CascadeFilter: imaging.Triangle})},
		{"nfnt/resize Lanczos3 cascade", generic(quality, func(r image.Rectangle, s image.Image) image.Image {
			return resize.Resize(uint(r.Dx()), uint(r.Dy()), s, resize.Lanczos3)
		})},
		{"nfnt/resize Bilinear cascade", generic(quality, func(r image.Rectangle, s image.Image) image.Image {
			return resize.Resize(uint(r.Dx()), uint(r.Dy()), s, resize.Bilinear)
		})},
		{"x/image/draw CatmullRom cascade", generic(quality, xdraw(draw.CatmullRom))},
		{"x/image/draw ApproxBiLinear cascade", generic(quality, xdraw(draw.ApproxBiLinear))},
	}
}

// References scales the full image with x/image/draw's CatmullRom straight
// to each default variant size: the quality reference.
func References(full image.Image) map[string]*image.RGBA {
	refs := map[string]*image.RGBA{}
	b := full.Bounds()
	for _, s := range imaging.DefaultSpecs {
		rw, rh := imaging.Fit(b.Dx(), b.Dy(), s.LongEdge)
		r := image.NewRGBA(image.Rect(0, 0, rw, rh))
		draw.CatmullRom.Scale(r, r.Bounds(), full, b, draw.Src, nil)
		refs[s.Name] = r
	}
	return refs
}

// TestJPEG is the generated w×h test photo as a quality-90 JPEG.
func TestJPEG(w, h int) ([]byte, error) {
	var buf bytes.Buffer
	err := jpeg.Encode(&buf, Generate(w, h, 1), &jpeg.Options{Quality: 90})
	return buf.Bytes(), err
}

// ours is the production pipeline: imaging.Process.
func ours(opt imaging.Options) func([]byte, bool) (map[string]image.Image, map[string]image.Image, error) {
	return func(data []byte, keep bool) (map[string]image.Image, map[string]image.Image, error) {
		res, err := imaging.Process(data, opt)
		if err != nil || !keep {
			return nil, nil, err
		}
		src, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, nil, err
		}
		pre, post := map[string]image.Image{}, map[string]image.Image{}
		for i, img := range imaging.Scale(src, 1, opt) {
			pre[imaging.DefaultSpecs[i].Name] = img
		}
		for _, v := range res.Variants {
			if post[v.Name], err = jpeg.Decode(bytes.NewReader(v.Data)); err != nil {
				return nil, nil, err
			}
		}
		return pre, post, nil
	}
}

// generic is the naive pipeline with a pluggable scaler: decode, scale
// large from the original and each smaller from the one before, encode.
func generic(quality int, scale func(dst image.Rectangle, src image.Image) image.Image) func([]byte, bool) (map[string]image.Image, map[string]image.Image, error) {
	return func(data []byte, keep bool) (map[string]image.Image, map[string]image.Image, error) {
		src, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, nil, err
		}
		pre, post := map[string]image.Image{}, map[string]image.Image{}
		for _, s := range imaging.DefaultSpecs {
			b := src.Bounds()
			w, h := imaging.Fit(b.Dx(), b.Dy(), s.LongEdge)
			src = scale(image.Rect(0, 0, w, h), src)
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: quality}); err != nil {
				return nil, nil, err
			}
			if keep {
				pre[s.Name] = src
				if post[s.Name], err = jpeg.Decode(bytes.NewReader(buf.Bytes())); err != nil {
					return nil, nil, err
				}
			}
		}
		return pre, post, nil
	}
}

func xdraw(k draw.Interpolator) func(image.Rectangle, image.Image) image.Image {
	return func(r image.Rectangle, s image.Image) image.Image {
		dst := image.NewRGBA(r)
		k.Scale(dst, r, s, s.Bounds(), draw.Src, nil)
		return dst
	}
}

// burst offers Burst uploads to BurstWorkers concurrent tasks that go
// through the memory-budget limiter as the worker's do, and records the
// peak RSS and the most tasks that held image memory at once.
func burst(rep *Report, data []byte, o Options) error {
	lim := imaging.NewLimiter(o.BudgetBytes)
	var mu sync.Mutex
	inFlight := 0
	var firstErr error
	rep.BurstBaseRSS, rep.BurstPeakRSS = peakRSSOf(func() {
		start := time.Now()
		jobs := make(chan int)
		var wg sync.WaitGroup
		for i := 0; i < o.BurstWorkers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range jobs {
					info, err := imaging.Probe(bytes.NewReader(data))
					if err == nil {
						var release func()
						release, err = lim.Acquire(context.Background(),
							imaging.EstimateBytes(info, int64(len(data)), imaging.DefaultSpecs[0].LongEdge))
						if err == nil {
							mu.Lock()
							inFlight++
							rep.MaxInFlight = max(rep.MaxInFlight, inFlight)
							mu.Unlock()
							// The worker downloads the object after acquiring.
							own := bytes.Clone(data)
							_, err = imaging.Process(own, imaging.Options{Quality: o.Quality})
							mu.Lock()
							inFlight--
							mu.Unlock()
							release()
						}
					}
					if err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
				}
			}()
		}
		for i := 0; i < o.Burst; i++ {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		rep.BurstWall = time.Since(start)
	})
	return firstErr
}

// peakRSSOf resets the process's RSS high-water mark (Linux clear_refs 5),
// runs f, and returns the RSS before and the high-water mark after; zeros
// where /proc is unavailable.
func peakRSSOf(f func()) (base, peak int64) {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	base = procStatus("VmRSS")
	f()
	peak = procStatus("VmHWM")
	return base, peak
}

func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	fmt.Fprintf(w, "imaging: three variants (1200/600/150) of a %dx%d JPEG (%.1f MP, %.1f MiB), GOMAXPROCS=%d\n",
		r.Width, r.Height, float64(r.Width*r.Height)/1e6, mib(int64(r.FileBytes)), runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "  times: best of the rounds (median in brackets); decode and pipelines alternate\n")
	fmt.Fprintf(w, "  %-44s %7.1f ms [%7.1f]  1.00x [1.00x]\n", "baseline: image/jpeg decode alone", ms(r.Decode), ms(r.DecodeMedian))
	for _, p := range r.Pipelines {
		fmt.Fprintf(w, "  %-44s %7.1f ms [%7.1f]  %.2fx [%.2fx] decode  PSNR large/medium/thumb %.1f/%.1f/%.1f dB (after JPEG %.1f/%.1f/%.1f)\n",
			p.Name, ms(p.Best), ms(p.Median), p.Ratio, p.RatioMedian, p.PSNR["large"], p.PSNR["medium"], p.PSNR["thumb"],
			p.PSNRJPEG["large"], p.PSNRJPEG["medium"], p.PSNRJPEG["thumb"])
	}
	fmt.Fprintf(w, "  PSNR: each variant vs CatmullRom scaled from the full image; pixels before encoding, and decoded from the JPEG\n")
	fmt.Fprintf(w, "  peak RSS of one task: %.1f MiB (process RSS before: %.1f MiB)\n", mib(r.PeakRSSTask), mib(r.BaseRSS))
	if r.Burst > 0 {
		fmt.Fprintf(w, "  burst of %d uploads, %d concurrent tasks, budget %.0f MiB: peak RSS %.1f MiB (before: %.1f MiB), "+
			"at most %d images in memory at once, %.1f s\n", r.Burst, r.BurstWorkers, mib(r.BudgetBytes),
			mib(r.BurstPeakRSS), mib(r.BurstBaseRSS), r.MaxInFlight, r.BurstWall.Seconds())
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// PSNR compares two images of the same size over R, G and B, in dB; +Inf
// when identical, 0 when the sizes differ.
func PSNR(ref, img image.Image) float64 {
	if img == nil || ref.Bounds().Size() != img.Bounds().Size() {
		return 0
	}
	a, b := asRGBA(ref), asRGBA(img)
	var sum float64
	n := 0
	for y := 0; y < a.Rect.Dy(); y++ {
		ra := a.Pix[y*a.Stride : y*a.Stride+a.Rect.Dx()*4]
		rb := b.Pix[y*b.Stride : y*b.Stride+b.Rect.Dx()*4]
		for x := 0; x < len(ra); x += 4 {
			for c := 0; c < 3; c++ {
				d := float64(ra[x+c]) - float64(rb[x+c])
				sum += d * d
			}
			n += 3
		}
	}
	if sum == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(sum/float64(n)))
}

func asRGBA(img image.Image) *image.RGBA {
	if m, ok := img.(*image.RGBA); ok && m.Rect.Min == (image.Point{}) {
		return m
	}
	b := img.Bounds()
	m := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(m, m.Bounds(), img, b.Min, draw.Src)
	return m
}
