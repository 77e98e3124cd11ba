package imagingbench

import (
	"image"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// Generate makes a w×h photo-like test image: smooth colour gradients,
// sensor-like noise, sharp-edged shapes, fine stripes and a zone plate of
// rising frequency (which shows aliasing at once).
func Generate(w, h int, seed uint64) *image.YCbCr {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	type disc struct{ x, y, r, dy, dcb, dcr float64 }
	discs := make([]disc, 60)
	for i := range discs {
		discs[i] = disc{rng.Float64() * float64(w), rng.Float64() * float64(h), 20 + rng.Float64()*float64(w)/12,
			rng.Float64()*120 - 60, rng.Float64()*60 - 30, rng.Float64()*60 - 30}
	}
	cx, cy := float64(w)*0.75, float64(h)*0.3
	zr := float64(min(w, h)) / 5
	noise := make([]int8, 4096)
	for i := range noise {
		noise[i] = int8(rng.NormFloat64() * 6)
	}
	parallelRows(h, func(y int) {
		fy := float64(y)
		n := int(uint(y) * 2654435761 % 4096)
		for x := 0; x < w; x++ {
			fx := float64(x)
			v := 60 + 120*fx/float64(w)*0.6 + 80*fy/float64(h)*0.4 + 20*math.Sin(fx/180)*math.Cos(fy/240)
			for _, d := range discs {
				if (fx-d.x)*(fx-d.x)+(fy-d.y)*(fy-d.y) < d.r*d.r {
					v += d.dy
				}
			}
			// Fine stripes in a band: detail near the Nyquist limit of the variants.
			if y > h/2 && y < h/2+h/10 {
				v += 25 * math.Sin(fx*0.9)
			}
			// Zone plate.
			dx, dy := fx-cx, fy-cy
			if r2 := dx*dx + dy*dy; r2 < zr*zr {
				v += 60 * math.Cos(r2*math.Pi/(zr*4))
			}
			v += float64(noise[(n+x*7)%4096])
			img.Y[y*img.YStride+x] = clamp8(v)
		}
	})
	cw, ch := (w+1)/2, (h+1)/2
	parallelRows(ch, func(y int) {
		fy := float64(2 * y)
		for x := 0; x < cw; x++ {
			fx := float64(2 * x)
			cb := 128 + 40*math.Sin(fx/700) - 30*fy/float64(h)
			cr := 128 + 35*math.Cos(fy/500) + 20*fx/float64(w)
			for _, d := range discs {
				if (fx-d.x)*(fx-d.x)+(fy-d.y)*(fy-d.y) < d.r*d.r {
					cb += d.dcb
					cr += d.dcr
				}
			}
			img.Cb[y*img.CStride+x] = clamp8(cb)
			img.Cr[y*img.CStride+x] = clamp8(cr)
		}
	})
	return img
}

func parallelRows(h int, f func(y int)) {
	var wg sync.WaitGroup
	procs := runtime.GOMAXPROCS(0)
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for y := p; y < h; y += procs {
				f(y)
			}
		}()
	}
	wg.Wait()
}

func clamp8(v float64) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v + 0.5)
}
