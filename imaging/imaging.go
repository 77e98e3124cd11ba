// Package imaging turns an uploaded image into its display variants: it
// reads the header first and refuses images over a pixel limit before
// decoding them (decompression bombs), decodes JPEG, PNG, GIF (first frame)
// and WebP once, scales with an alias-free area filter straight on the
// decoder's planes (YCbCr stays YCbCr), cascades from the largest variant to
// the smallest, honours the JPEG EXIF orientation on the small results, and
// encodes JPEG (PNG when the source has transparency). It imports nothing
// of ours.
package imaging

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"sync"

	"golang.org/x/image/webp"
)

// Errors a caller tells apart: each means the image will never process, so
// a task should not retry it.
var (
	// ErrUnsupported: not a JPEG, PNG, GIF or WebP image.
	ErrUnsupported = errors.New("unsupported image format")
	// ErrTooManyPixels: the header declares more pixels than the limit.
	ErrTooManyPixels = errors.New("image has too many pixels")
	// ErrCorrupt: the header or the data cannot be decoded.
	ErrCorrupt = errors.New("corrupt image")
)

// IsPermanent reports whether err is one of the errors above.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrUnsupported) || errors.Is(err, ErrTooManyPixels) || errors.Is(err, ErrCorrupt)
}

// Info is what the header says.
type Info struct {
	Format string // jpeg, png, gif or webp
	Width  int    // as stored, before orientation
	Height int
	// Orientation is the EXIF orientation (1..8) of a JPEG, 1 otherwise.
	Orientation int
	colorModel  color.Model
}

// Pixels is Width×Height.
func (i Info) Pixels() int64 { return int64(i.Width) * int64(i.Height) }

// headerLimit bounds how much of a file Probe reads: the header and, for a
// JPEG, the EXIF segment before the frame header.
const headerLimit = 1 << 20

// Probe reads only the header of an image: format, dimensions, EXIF
// orientation. It returns ErrUnsupported or ErrCorrupt; it never decodes
// pixels, so it is safe on a decompression bomb.
func Probe(r io.Reader) (Info, error) {
	var head bytes.Buffer
	br := bufio.NewReader(io.TeeReader(io.LimitReader(r, headerLimit), &head))
	var info Info
	magic, _ := br.Peek(16)
	switch {
	case bytes.HasPrefix(magic, []byte("\xFF\xD8\xFF")):
		info.Format = "jpeg"
	case bytes.HasPrefix(magic, []byte("\x89PNG\r\n\x1a\n")):
		info.Format = "png"
	case bytes.HasPrefix(magic, []byte("GIF87a")), bytes.HasPrefix(magic, []byte("GIF89a")):
		info.Format = "gif"
	case len(magic) >= 12 && string(magic[:4]) == "RIFF" && string(magic[8:12]) == "WEBP":
		info.Format = "webp"
	default:
		return info, ErrUnsupported
	}
	var cfg image.Config
	var err error
	switch info.Format {
	case "jpeg":
		cfg, err = jpeg.DecodeConfig(br)
	case "png":
		cfg, err = png.DecodeConfig(br)
	case "gif":
		cfg, err = gif.DecodeConfig(br)
	case "webp":
		cfg, err = webp.DecodeConfig(br)
	}
	if err != nil {
		return info, fmt.Errorf("%w: %s header: %v", ErrCorrupt, info.Format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return info, fmt.Errorf("%w: %dx%d", ErrCorrupt, cfg.Width, cfg.Height)
	}
	info.Width, info.Height, info.colorModel = cfg.Width, cfg.Height, cfg.ColorModel
	info.Orientation = 1
	if info.Format == "jpeg" {
		info.Orientation = JPEGOrientation(head.Bytes())
	}
	return info, nil
}

// Spec is one variant to make.
type Spec struct {
	Name     string
	LongEdge int
}

// DefaultSpecs are thumb, medium and large: long edges 150, 600 and 1200.
var DefaultSpecs = []Spec{{"large", 1200}, {"medium", 600}, {"thumb", 150}}

// Options tune Process.
type Options struct {
	// MaxPixels refuses images whose header declares more (0: 50 MP).
	MaxPixels int64
	// Specs are the variants, any order (nil: DefaultSpecs).
	Specs []Spec
	// Quality is the JPEG quality 1..100 (0: 85).
	Quality int
	// Filter scales the original to the largest variant, the expensive
	// step (default Area: the fastest alias-free kernel).
	Filter Filter
	// CascadeFilter scales each smaller variant from the one before, on
	// images of a megapixel or less (default Area: at the factors 2 and 4
	// of the default sizes it is exact 2×2 and 4×4 averaging; CatmullRom is
	// sharper for about 4% more time).
	CascadeFilter Filter
}

// filterFor returns the kernel of the i-th step of the cascade.
func (o *Options) filterFor(step int) Filter {
	if step == 0 {
		return o.Filter
	}
	return o.CascadeFilter
}

func (o *Options) defaults() {
	if o.MaxPixels <= 0 {
		o.MaxPixels = 50_000_000
	}
	if len(o.Specs) == 0 {
		o.Specs = DefaultSpecs
	}
	if o.Quality <= 0 || o.Quality > 100 {
		o.Quality = 85
	}
}

// Variant is one encoded result.
type Variant struct {
	Name        string
	Width       int // as displayed (after orientation)
	Height      int
	ContentType string // image/jpeg or image/png
	Data        []byte
}

// Result is the outcome of Process.
type Result struct {
	Info     Info
	Variants []Variant // in the order of Options.Specs
}

// Process checks the header against the pixel limit, decodes data once and
// makes every variant. Errors: ErrUnsupported, ErrTooManyPixels, ErrCorrupt.
func Process(data []byte, opt Options) (*Result, error) {
	opt.defaults()
	info, err := Probe(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if info.Pixels() > opt.MaxPixels {
		return nil, fmt.Errorf("%w: %dx%d is over %d", ErrTooManyPixels, info.Width, info.Height, opt.MaxPixels)
	}
	img, err := decode(data, info.Format)
	if err != nil {
		return nil, err
	}
	if b := img.Bounds(); b.Dx() != info.Width || b.Dy() != info.Height {
		return nil, fmt.Errorf("%w: decoded size differs from the header", ErrCorrupt)
	}
	variants, err := Variants(img, info.Orientation, opt)
	if err != nil {
		return nil, err
	}
	return &Result{Info: info, Variants: variants}, nil
}

func decode(data []byte, format string) (image.Image, error) {
	r := bytes.NewReader(data)
	var img image.Image
	var err error
	switch format {
	case "jpeg":
		img, err = jpeg.Decode(r)
	case "png":
		img, err = png.Decode(r)
	case "gif":
		img, err = gif.Decode(r) // the first frame
	case "webp":
		img, err = webp.Decode(r)
	default:
		return nil, ErrUnsupported
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, format, err)
	}
	return img, nil
}

// Scale returns the scaled and oriented images of every spec (in the order
// of opt.Specs) without encoding them: the same cascade as Variants, for
// callers that want pixels (quality measurements).
func Scale(img image.Image, orientation int, opt Options) []image.Image {
	opt.defaults()
	out := make([]image.Image, len(opt.Specs))
	src := working(img)
	b := src.Bounds()
	for step, idx := range sortedSpecs(opt.Specs) {
		// Sizes come from the original, so a cascade rounds as a direct scale would.
		w, h := Fit(b.Dx(), b.Dy(), opt.Specs[idx].LongEdge)
		src = resize(src, w, h, opt.filterFor(step))
		out[idx] = orient(src, orientation)
	}
	return out
}

// Variants scales a decoded image to every spec, largest first, each from
// the one before (decode once, cascade), then orients and encodes each.
// Encoding of one variant overlaps the scaling of the next.
func Variants(img image.Image, orientation int, opt Options) ([]Variant, error) {
	opt.defaults()
	order := sortedSpecs(opt.Specs)
	src := working(img)
	out := make([]Variant, len(opt.Specs))
	errs := make([]error, len(opt.Specs))
	var wg sync.WaitGroup
	b := src.Bounds()
	for step, idx := range order {
		spec := opt.Specs[idx]
		w, h := Fit(b.Dx(), b.Dy(), spec.LongEdge)
		scaled := resize(src, w, h, opt.filterFor(step))
		src = scaled
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[idx], errs[idx] = encode(spec.Name, orient(scaled, orientation), opt.Quality)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// sortedSpecs returns the indices of specs by long edge, largest first.
func sortedSpecs(specs []Spec) []int {
	idx := make([]int, len(specs))
	for i := range idx {
		idx[i] = i
	}
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && specs[idx[j]].LongEdge > specs[idx[j-1]].LongEdge; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	return idx
}

// working returns the image in a form the resizers take without a copy
// where possible: YCbCr and Gray as they are, anything else as RGBA.
func working(img image.Image) image.Image {
	switch m := img.(type) {
	case *image.YCbCr:
		if m.Rect.Min == (image.Point{}) {
			return m
		}
	case *image.Gray:
		return m
	}
	return toRGBA(img)
}

func resize(img image.Image, w, h int, f Filter) image.Image {
	switch m := img.(type) {
	case *image.YCbCr:
		return resizeYCbCr(m, w, h, f)
	case *image.Gray:
		return resizeGray(m, w, h, f)
	case *image.RGBA:
		return resizeRGBA(m, w, h, f)
	}
	panic(fmt.Sprintf("imaging: resize of %T", img)) // working() only makes the three above
}

// encode writes a variant: JPEG, or PNG when it has transparency.
func encode(name string, img image.Image, quality int) (Variant, error) {
	var buf bytes.Buffer
	b := img.Bounds()
	v := Variant{Name: name, Width: b.Dx(), Height: b.Dy()}
	if m, ok := img.(*image.RGBA); ok && !m.Opaque() {
		nrgba := image.NewNRGBA(b)
		draw.Draw(nrgba, b, m, b.Min, draw.Src)
		if err := (&png.Encoder{CompressionLevel: png.DefaultCompression}).Encode(&buf, nrgba); err != nil {
			return v, fmt.Errorf("encode %s: %w", name, err)
		}
		v.ContentType, v.Data = "image/png", buf.Bytes()
		return v, nil
	}
	buf.Grow(b.Dx() * b.Dy() / 3)
	if err := encodeJPEG(&buf, img, quality); err != nil {
		return v, fmt.Errorf("encode %s: %w", name, err)
	}
	v.ContentType, v.Data = "image/jpeg", buf.Bytes()
	return v, nil
}

// EstimateBytes is the memory one Process call needs for an image with this
// header and encoded size, with headroom: the encoded bytes, the decoded
// pixels, the RGBA copy non-YCbCr images get, the resizer's 16-bit
// intermediate for the largest variant, and the variants themselves. The
// worker sizes its image concurrency from it.
func EstimateBytes(info Info, encodedSize int64, largestEdge int) int64 {
	px := info.Pixels()
	decoded, convert, chans := int64(4), int64(4), int64(4)
	model := info.colorModel
	if model == nil && info.Format == "jpeg" {
		model = color.YCbCrModel // an Info made by hand: assume a colour photo
	}
	switch model {
	case color.YCbCrModel:
		if info.Format == "jpeg" {
			decoded, convert, chans = 3, 0, 3
		} else {
			decoded = 2 // WebP lossy: 4:2:0
		}
	case color.GrayModel:
		decoded, convert, chans = 1, 0, 1
	case color.Gray16Model:
		decoded = 2
	case color.RGBAModel:
		convert = 0
	case color.RGBA64Model, color.NRGBA64Model:
		decoded = 8
	case color.CMYKModel:
		decoded = 4
	default:
		if _, ok := info.colorModel.(color.Palette); ok {
			decoded = 1
		}
	}
	le := int64(largestEdge)
	inter := int64(info.Height) * min(int64(info.Width), le) * 2 * chans
	variants := le * le * 4 * 2
	return encodedSize + px*(decoded+convert) + inter + variants + 8<<20
}
