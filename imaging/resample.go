package imaging

import (
	"image"
	"image/draw"
	"math"
	"runtime"
	"sync"
)

// The resampler is separable and works on 8-bit planes: a horizontal pass
// into a 16-bit intermediate (value × 256, so no precision is lost between
// passes), then a vertical pass back to 8 bits. Weights are fixed-point with
// weightBits fractional bits and sum exactly to 1 for every output sample, so
// flat areas stay exactly flat.
const (
	weightBits = 14
	weightOne  = 1 << weightBits
	// interBits are the extra fractional bits the intermediate keeps.
	interBits = 8
)

// weights is the resampling table of one axis: output i reads taps source
// samples from start[i], weighted by w[i*taps:(i+1)*taps].
type weights struct {
	taps  int
	start []int
	w     []int32
}

// Filter names a resampling kernel.
type Filter int

// Filters the package implements.
const (
	// Area averages each output pixel's footprint in the source with exact
	// fractional coverage (a box whose width is the scale factor). Cheap and
	// alias-free for the downscales thumbnails need.
	Area Filter = iota
	// Triangle is a tent whose support grows with the scale factor: a little
	// smoother than Area at about twice the taps.
	Triangle
	// CatmullRom is the bicubic (B=0, C=½) kernel scaled to the reduction:
	// sharper, with small negative lobes, at four times the taps of Area.
	CatmullRom
)

// newWeights builds the table that maps a source axis of n samples onto m
// (m <= n: the package never upscales).
func newWeights(n, m int, f Filter) weights {
	scale := float64(n) / float64(m)
	var support float64 // half-width of the kernel in source samples
	switch f {
	case Triangle:
		support = scale
	case CatmullRom:
		support = 2 * scale
	default:
		support = scale / 2
	}
	taps := int(math.Ceil(2*support)) + 1
	if taps > n {
		taps = n
	}
	wt := weights{taps: taps, start: make([]int, m), w: make([]int32, m*taps)}
	fw := make([]float64, taps)
	for i := 0; i < m; i++ {
		center := (float64(i) + 0.5) * scale // in source coordinates (pixel edges at integers)
		lo := int(math.Floor(center - support))
		if lo < 0 {
			lo = 0
		}
		if lo+taps > n {
			lo = n - taps
		}
		wt.start[i] = lo
		var sum float64
		for k := 0; k < taps; k++ {
			j := float64(lo + k) // source sample j covers [j, j+1)
			var v float64
			switch f {
			case CatmullRom:
				v = catmullRom((j + 0.5 - center) / scale)
			case Triangle:
				// Integrate the tent over the sample's extent with a
				// midpoint rule fine enough for 8-bit output.
				const steps = 8
				for s := 0; s < steps; s++ {
					x := (j + (float64(s)+0.5)/steps - center) / scale
					if t := 1 - math.Abs(x); t > 0 {
						v += t
					}
				}
			default:
				v = math.Min(j+1, center+support) - math.Max(j, center-support)
				if v < 0 {
					v = 0
				}
			}
			fw[k] = v
			sum += v
		}
		// Quantize so that the integer weights sum to exactly weightOne: the
		// rounding error goes to the largest weight.
		var isum int32
		big := 0
		for k := 0; k < taps; k++ {
			q := int32(math.Round(fw[k] / sum * weightOne))
			wt.w[i*taps+k] = q
			isum += q
			if fw[k] > fw[big] {
				big = k
			}
		}
		wt.w[i*taps+big] += weightOne - isum
	}
	return wt
}

func catmullRom(x float64) float64 {
	x = math.Abs(x)
	switch {
	case x < 1:
		return (1.5*x-2.5)*x*x + 1
	case x < 2:
		return ((-0.5*x+2.5)*x-4)*x + 2
	}
	return 0
}

// parallel runs fn over [0, n) split into one contiguous chunk per CPU.
func parallel(n int, fn func(lo, hi int)) {
	procs := runtime.GOMAXPROCS(0)
	if procs > n {
		procs = n
	}
	if procs <= 1 || n < 64 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + procs - 1) / procs
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// plane is an 8-bit image with interleaved channels (1 for a Y, Cb or Cr
// plane, 4 for premultiplied RGBA).
type plane struct {
	pix    []uint8
	stride int
	w, h   int
	ch     int
}

// resamplePlane scales src to w×h with filter f.
func resamplePlane(src plane, w, h int, f Filter) plane {
	wx := newWeights(src.w, w, f)
	wy := newWeights(src.h, h, f)
	ch := src.ch
	// Horizontal pass: every source row, w×ch samples of 16 bits.
	inter := make([]uint16, src.h*w*ch)
	parallel(src.h, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			row := src.pix[y*src.stride : y*src.stride+src.w*ch]
			out := inter[y*w*ch : (y+1)*w*ch]
			if ch == 1 {
				hpass1(out, row, wx)
			} else {
				hpassN(out, row, wx, ch)
			}
		}
	})
	dst := plane{pix: make([]uint8, w*h*ch), stride: w * ch, w: w, h: h, ch: ch}
	n := w * ch
	parallel(h, func(lo, hi int) {
		acc := make([]int32, n)
		for y := lo; y < hi; y++ {
			clear(acc)
			s := wy.start[y]
			for k, wk := range wy.w[y*wy.taps : (y+1)*wy.taps] {
				if wk == 0 {
					continue
				}
				vpassAcc(acc, inter[(s+k)*n:(s+k+1)*n], wk)
			}
			out := dst.pix[y*dst.stride : y*dst.stride+n]
			const shift = weightBits + interBits
			for x, v := range acc {
				v = (v + 1<<(shift-1)) >> shift
				if v > 255 {
					v = 255
				} else if v < 0 {
					v = 0
				}
				out[x] = uint8(v)
			}
		}
	})
	return dst
}

func vpassAcc(acc []int32, row []uint16, wk int32) {
	row = row[:len(acc)]
	for x := range acc {
		acc[x] += int32(row[x]) * wk
	}
}

// clamp16 keeps a filtered sample in the intermediate's range: only
// kernels with negative lobes (CatmullRom) overshoot.
func clamp16(v int32) uint16 {
	if uint32(v) > 255<<interBits {
		if v < 0 {
			return 0
		}
		return 255 << interBits
	}
	return uint16(v)
}

// hpass1 filters one single-channel row. The common tap counts are
// unrolled: with fixed-length slices the compiler drops the bounds checks,
// which roughly halves the cost of the pass that reads every source pixel.
func hpass1(out []uint16, row []uint8, wx weights) {
	const shift = weightBits - interBits
	const round = 1 << (shift - 1)
	taps := wx.taps
	switch taps {
	case 2:
		for i := range out {
			s, w := row[wx.start[i]:][:2], wx.w[i*2:][:2]
			out[i] = clamp16((int32(s[0])*w[0] + int32(s[1])*w[1] + round) >> shift)
		}
	case 3:
		for i := range out {
			s, w := row[wx.start[i]:][:3], wx.w[i*3:][:3]
			out[i] = clamp16((int32(s[0])*w[0] + int32(s[1])*w[1] + int32(s[2])*w[2] + round) >> shift)
		}
	case 4:
		for i := range out {
			s, w := row[wx.start[i]:][:4], wx.w[i*4:][:4]
			out[i] = clamp16((int32(s[0])*w[0] + int32(s[1])*w[1] + int32(s[2])*w[2] + int32(s[3])*w[3] + round) >> shift)
		}
	case 5:
		for i := range out {
			s, w := row[wx.start[i]:][:5], wx.w[i*5:][:5]
			out[i] = clamp16((int32(s[0])*w[0] + int32(s[1])*w[1] + int32(s[2])*w[2] + int32(s[3])*w[3] +
				int32(s[4])*w[4] + round) >> shift)
		}
	case 6:
		for i := range out {
			s, w := row[wx.start[i]:][:6], wx.w[i*6:][:6]
			out[i] = clamp16((int32(s[0])*w[0] + int32(s[1])*w[1] + int32(s[2])*w[2] + int32(s[3])*w[3] +
				int32(s[4])*w[4] + int32(s[5])*w[5] + round) >> shift)
		}
	default:
		for i := range out {
			src := row[wx.start[i]:][:taps]
			wi := wx.w[i*taps:][:taps]
			var sum int32
			for k, v := range src {
				sum += int32(v) * wi[k]
			}
			out[i] = clamp16((sum + round) >> shift)
		}
	}
}

// hpassN filters one row of ch interleaved channels.
func hpassN(out []uint16, row []uint8, wx weights, ch int) {
	const shift = weightBits - interBits
	taps := wx.taps
	var sum [4]int32
	for i := 0; i < len(out)/ch; i++ {
		s := wx.start[i] * ch
		wi := wx.w[i*taps : i*taps+taps]
		sum = [4]int32{}
		for k, wk := range wi {
			p := row[s+k*ch : s+k*ch+ch]
			for c := 0; c < ch; c++ {
				sum[c] += int32(p[c]) * wk
			}
		}
		for c := 0; c < ch; c++ {
			out[i*ch+c] = clamp16((sum[c] + 1<<(shift-1)) >> shift)
		}
	}
}

// chromaSize returns the size of a chroma plane of a w×h image.
func chromaSize(w, h int, r image.YCbCrSubsampleRatio) (int, int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h
}

// resizeYCbCr scales a YCbCr image plane by plane, without ever converting
// it to RGB. The result is 4:4:4: chroma at full resolution costs little at
// variant sizes, and the JPEG encoder averages it down to 4:2:0 itself (a
// 4:2:0 result would be subsampled twice, and visibly so in thumbnails).
func resizeYCbCr(src *image.YCbCr, w, h int, f Filter) *image.YCbCr {
	b := src.Rect
	sw, sh := b.Dx(), b.Dy()
	cw, chh := chromaSize(sw, sh, src.SubsampleRatio)
	dst := &image.YCbCr{SubsampleRatio: image.YCbCrSubsampleRatio444, Rect: image.Rect(0, 0, w, h)}
	dcw, dch := w, h
	y := resamplePlane(plane{pix: src.Y[src.YOffset(b.Min.X, b.Min.Y):], stride: src.YStride, w: sw, h: sh, ch: 1}, w, h, f)
	var cb, cr plane
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cb = resamplePlane(plane{pix: src.Cb[src.COffset(b.Min.X, b.Min.Y):], stride: src.CStride, w: cw, h: chh, ch: 1}, dcw, dch, f)
	}()
	cr = resamplePlane(plane{pix: src.Cr[src.COffset(b.Min.X, b.Min.Y):], stride: src.CStride, w: cw, h: chh, ch: 1}, dcw, dch, f)
	wg.Wait()
	dst.Y, dst.YStride = y.pix, y.stride
	dst.Cb, dst.Cr, dst.CStride = cb.pix, cr.pix, cb.stride
	return dst
}

// resizeGray scales a grayscale image.
func resizeGray(src *image.Gray, w, h int, f Filter) *image.Gray {
	b := src.Rect
	p := resamplePlane(plane{pix: src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], stride: src.Stride, w: b.Dx(), h: b.Dy(), ch: 1}, w, h, f)
	return &image.Gray{Pix: p.pix, Stride: p.stride, Rect: image.Rect(0, 0, w, h)}
}

// toRGBA returns the image as premultiplied RGBA (averaging premultiplied
// values is what keeps transparent pixels' colours from bleeding).
func toRGBA(src image.Image) *image.RGBA {
	if r, ok := src.(*image.RGBA); ok {
		return r
	}
	b := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	parallel(b.Dy(), func(lo, hi int) {
		draw.Draw(dst, image.Rect(0, lo, b.Dx(), hi), src, image.Pt(b.Min.X, b.Min.Y+lo), draw.Src)
	})
	return dst
}

// resizeRGBA scales a premultiplied RGBA image.
func resizeRGBA(src *image.RGBA, w, h int, f Filter) *image.RGBA {
	b := src.Rect
	p := resamplePlane(plane{pix: src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], stride: src.Stride, w: b.Dx(), h: b.Dy(), ch: 4}, w, h, f)
	return &image.RGBA{Pix: p.pix, Stride: p.stride, Rect: image.Rect(0, 0, w, h)}
}

// Fit returns the size of a w×h image scaled so that its long edge is at
// most longEdge, keeping the aspect ratio; it never upscales.
func Fit(w, h, longEdge int) (int, int) {
	if w <= longEdge && h <= longEdge {
		return w, h
	}
	if w >= h {
		nh := int(math.Round(float64(h) * float64(longEdge) / float64(w)))
		return longEdge, max(nh, 1)
	}
	nw := int(math.Round(float64(w) * float64(longEdge) / float64(h)))
	return max(nw, 1), longEdge
}
