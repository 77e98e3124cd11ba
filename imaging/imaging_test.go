package imaging_test

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"runtime"
	"testing"

	"github.com/rentalportal/portal/imaging"
	"github.com/rentalportal/portal/imaging/imagingtest"
)

func decodeVariant(t *testing.T, v imaging.Variant) image.Image {
	t.Helper()
	var img image.Image
	var err error
	switch v.ContentType {
	case "image/jpeg":
		img, err = jpeg.Decode(bytes.NewReader(v.Data))
	case "image/png":
		img, err = png.Decode(bytes.NewReader(v.Data))
	default:
		t.Fatalf("%s: content type %q", v.Name, v.ContentType)
	}
	if err != nil {
		t.Fatalf("%s: decode variant: %v", v.Name, err)
	}
	if b := img.Bounds(); b.Dx() != v.Width || b.Dy() != v.Height {
		t.Fatalf("%s: variant says %dx%d, file is %dx%d", v.Name, v.Width, v.Height, b.Dx(), b.Dy())
	}
	return img
}

func TestProcessFormats(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		data        []byte
		format      string
		w, h        int
		contentType string
	}{
		{"jpeg", imagingtest.JPEG(imagingtest.Gradient(1600, 900)), "jpeg", 1600, 900, "image/jpeg"},
		{"jpeg gray", imagingtest.JPEG(image.NewGray(image.Rect(0, 0, 700, 1400))), "jpeg", 700, 1400, "image/jpeg"},
		{"png opaque", imagingtest.PNG(imagingtest.Gradient(800, 600)), "png", 800, 600, "image/jpeg"},
		{"png transparent", imagingtest.TransparentPNG(640, 320), "png", 640, 320, "image/png"},
		{"gif animated", imagingtest.AnimatedGIF(300, 200), "gif", 300, 200, "image/jpeg"},
		{"webp lossy", imagingtest.WebPLossy, "webp", 150, 100, "image/jpeg"},
		{"webp alpha", imagingtest.WebPAlpha, "webp", 75, 100, "image/png"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res, err := imaging.Process(c.data, imaging.Options{})
			if err != nil {
				t.Fatalf("Process: %v", err)
			}
			if res.Info.Format != c.format || res.Info.Width != c.w || res.Info.Height != c.h {
				t.Fatalf("info = %+v, want %s %dx%d", res.Info, c.format, c.w, c.h)
			}
			if len(res.Variants) != 3 {
				t.Fatalf("%d variants", len(res.Variants))
			}
			for i, v := range res.Variants {
				spec := imaging.DefaultSpecs[i]
				if v.Name != spec.Name {
					t.Errorf("variant %d is %q, want %q", i, v.Name, spec.Name)
				}
				ww, wh := imaging.Fit(c.w, c.h, spec.LongEdge)
				if v.Width != ww || v.Height != wh {
					t.Errorf("%s: %dx%d, want %dx%d", v.Name, v.Width, v.Height, ww, wh)
				}
				if v.Width > c.w || v.Height > c.h {
					t.Errorf("%s: upscaled to %dx%d", v.Name, v.Width, v.Height)
				}
				if v.ContentType != c.contentType {
					t.Errorf("%s: %s, want %s", v.Name, v.ContentType, c.contentType)
				}
				decodeVariant(t, v)
			}
		})
	}
}

func TestGIFFirstFrameAndTransparency(t *testing.T) {
	t.Parallel()
	res, err := imaging.Process(imagingtest.AnimatedGIF(300, 200), imaging.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, g, b, _ := decodeVariant(t, res.Variants[2]).At(10, 10).RGBA()
	if r>>8 < 200 || g>>8 > 60 || b>>8 > 60 {
		t.Errorf("thumb pixel = %d,%d,%d: want the red first frame", r>>8, g>>8, b>>8)
	}
	res, err = imaging.Process(imagingtest.TransparentPNG(640, 320), imaging.Options{})
	if err != nil {
		t.Fatal(err)
	}
	img := decodeVariant(t, res.Variants[1])
	if _, _, _, a := img.At(img.Bounds().Dx()-2, 5).RGBA(); a != 0 {
		t.Errorf("right half alpha = %d, want transparent", a)
	}
	if _, _, _, a := img.At(2, 5).RGBA(); a != 0xffff {
		t.Errorf("left half alpha = %d, want opaque", a)
	}
}

// display returns the colour of the upright test picture at (x, y): red
// top-left, green top-right, blue bottom-left, white bottom-right.
func display(x, y, w, h int) color.RGBA {
	switch {
	case x < w/2 && y < h/2:
		return color.RGBA{255, 0, 0, 255}
	case y < h/2:
		return color.RGBA{0, 255, 0, 255}
	case x < w/2:
		return color.RGBA{0, 0, 255, 255}
	}
	return color.RGBA{255, 255, 255, 255}
}

// stored returns the picture as a camera would store it for EXIF
// orientation o, built from the EXIF definition ("row 0 is the visual
// top/bottom/left/right, column 0 the visual left/right/top/bottom"), not
// from the code under test.
func stored(o, w, h int) *image.RGBA {
	sw, sh := w, h
	if o >= 5 {
		sw, sh = h, w
	}
	img := image.NewRGBA(image.Rect(0, 0, sw, sh))
	for sy := 0; sy < sh; sy++ {
		for sx := 0; sx < sw; sx++ {
			var dx, dy int
			switch o {
			case 1: // row0 top, col0 left
				dx, dy = sx, sy
			case 2: // row0 top, col0 right
				dx, dy = w-1-sx, sy
			case 3: // row0 bottom, col0 right
				dx, dy = w-1-sx, h-1-sy
			case 4: // row0 bottom, col0 left
				dx, dy = sx, h-1-sy
			case 5: // row0 left, col0 top
				dx, dy = sy, sx
			case 6: // row0 right, col0 top
				dx, dy = w-1-sy, sx
			case 7: // row0 right, col0 bottom
				dx, dy = w-1-sy, h-1-sx
			case 8: // row0 left, col0 bottom
				dx, dy = sy, h-1-sx
			}
			img.SetRGBA(sx, sy, display(dx, dy, w, h))
		}
	}
	return img
}

func near(a, b uint32) bool { return a>>8+48 >= b>>8 && b>>8+48 >= a>>8 }

func TestEXIFOrientationComesOutUpright(t *testing.T) {
	t.Parallel()
	const w, h = 320, 160
	for o := 1; o <= 8; o++ {
		data := imagingtest.WithEXIF(imagingtest.JPEG(stored(o, w, h)), o)
		res, err := imaging.Process(data, imaging.Options{Specs: []imaging.Spec{{"large", 1200}, {"thumb", 80}}})
		if err != nil {
			t.Fatalf("orientation %d: %v", o, err)
		}
		if res.Info.Orientation != o {
			t.Fatalf("orientation %d read as %d", o, res.Info.Orientation)
		}
		for _, v := range res.Variants {
			img := decodeVariant(t, v)
			ww, wh := w, h
			if v.Name == "thumb" {
				ww, wh = 80, 40
			}
			if v.Width != ww || v.Height != wh {
				t.Fatalf("orientation %d %s: %dx%d, want %dx%d", o, v.Name, v.Width, v.Height, ww, wh)
			}
			for _, p := range []image.Point{{3, 3}, {ww - 4, 3}, {3, wh - 4}, {ww - 4, wh - 4}} {
				want := display(p.X*w/ww, p.Y*h/wh, w, h)
				r, g, b, _ := img.At(p.X, p.Y).RGBA()
				if !near(r, uint32(want.R)*0x101) || !near(g, uint32(want.G)*0x101) || !near(b, uint32(want.B)*0x101) {
					t.Errorf("orientation %d %s: pixel %v = %d,%d,%d, want %v", o, v.Name, p, r>>8, g>>8, b>>8, want)
				}
			}
		}
	}
}

func TestDecompressionBombRefusedBeforeDecoding(t *testing.T) {
	bomb := imagingtest.BombPNG(50000, 50000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := imaging.Process(bomb, imaging.Options{MaxPixels: 50_000_000})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, imaging.ErrTooManyPixels) || !imaging.IsPermanent(err) {
		t.Fatalf("err = %v, want ErrTooManyPixels", err)
	}
	// Decoding would allocate 10 GB; reading the header a few kilobytes
	// (the probe buffers up to 1 MiB).
	if d := after.TotalAlloc - before.TotalAlloc; d > 4<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes", d)
	}
}

func TestProcessRefusesWhatIsNotAnImage(t *testing.T) {
	t.Parallel()
	good := imagingtest.JPEG(imagingtest.Gradient(200, 100))
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"php renamed .jpg", []byte("<?php system($_GET['c']); ?>"), imaging.ErrUnsupported},
		{"html", []byte("<!DOCTYPE html><html><script>alert(1)</script></html>"), imaging.ErrUnsupported},
		{"empty", nil, imaging.ErrUnsupported},
		{"truncated jpeg", good[:len(good)/2], imaging.ErrCorrupt},
		{"jpeg header only", good[:20], imaging.ErrCorrupt},
		{"png with bad data", imagingtest.BombPNG(100, 100), imaging.ErrCorrupt},
	}
	for _, c := range cases {
		_, err := imaging.Process(c.data, imaging.Options{})
		if !errors.Is(err, c.want) || !imaging.IsPermanent(err) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestFlatStaysFlat(t *testing.T) {
	t.Parallel()
	img := image.NewRGBA(image.Rect(0, 0, 1000, 777))
	for i := range img.Pix {
		img.Pix[i] = 200
	}
	for _, f := range []imaging.Filter{imaging.Area, imaging.Triangle, imaging.CatmullRom} {
		out := imaging.Scale(img, 1, imaging.Options{Filter: f, CascadeFilter: f})
		for _, o := range out {
			m := o.(*image.RGBA)
			for i, v := range m.Pix {
				if v != 200 {
					t.Fatalf("filter %d: pixel byte %d = %d, want 200", f, i, v)
				}
			}
		}
	}
}

func TestEstimateCoversMeasuredAllocation(t *testing.T) {
	data := imagingtest.JPEG(imagingtest.Gradient(2400, 1600))
	info, err := imaging.Probe(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := imaging.Process(data, imaging.Options{}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	est := imaging.EstimateBytes(info, int64(len(data)), 1200)
	if got := int64(after.TotalAlloc - before.TotalAlloc); got > est {
		t.Fatalf("Process allocated %d bytes in all, estimate %d", got, est)
	}
}

func FuzzJPEGOrientation(f *testing.F) {
	f.Add(imagingtest.WithEXIF(imagingtest.JPEG(imagingtest.Gradient(8, 8)), 6))
	f.Add([]byte("\xFF\xD8\xFF\xE1\x00\x10Exif\x00\x00II*\x00\x08\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if o := imaging.JPEGOrientation(b); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}

func FuzzProbe(f *testing.F) {
	f.Add(imagingtest.BombPNG(10, 10))
	f.Add(imagingtest.WebPLossy)
	f.Add(imagingtest.AnimatedGIF(4, 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := imaging.Probe(bytes.NewReader(b))
		if err == nil && (info.Width <= 0 || info.Height <= 0) {
			t.Fatalf("probe ok with %dx%d", info.Width, info.Height)
		}
	})
}
