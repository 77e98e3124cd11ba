package imaging

import (
	"bytes"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"testing"
)

// The banded encode must decode to exactly the pixels of a one-piece
// encode: same tables, same blocks, only restart markers between bands.
func TestBandedJPEGDecodesIdentically(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func(p []uint8) {
		for i := range p {
			p[i] = uint8(rng.IntN(256))
		}
	}
	ycc := image.NewYCbCr(image.Rect(0, 0, 1201, 901), image.YCbCrSubsampleRatio444)
	noise(ycc.Y)
	noise(ycc.Cb)
	noise(ycc.Cr)
	rgba := image.NewRGBA(image.Rect(0, 0, 1000, 700))
	noise(rgba.Pix)
	for i := 3; i < len(rgba.Pix); i += 4 {
		rgba.Pix[i] = 255
	}
	gray := image.NewGray(image.Rect(0, 0, 900, 1333))
	noise(gray.Pix)
	for name, img := range map[string]image.Image{"ycbcr": ycc, "rgba": rgba, "gray": gray} {
		var banded, whole bytes.Buffer
		if err := encodeJPEG(&banded, img, 85); err != nil {
			t.Fatal(err)
		}
		if err := jpeg.Encode(&whole, img, &jpeg.Options{Quality: 85}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(banded.Bytes(), []byte{0xFF, 0xDD}) {
			t.Fatalf("%s: not banded", name)
		}
		a, err := jpeg.Decode(bytes.NewReader(banded.Bytes()))
		if err != nil {
			t.Fatalf("%s: decode banded: %v", name, err)
		}
		b, _ := jpeg.Decode(bytes.NewReader(whole.Bytes()))
		if a.Bounds() != b.Bounds() {
			t.Fatalf("%s: bounds %v vs %v", name, a.Bounds(), b.Bounds())
		}
		for y := 0; y < a.Bounds().Dy(); y++ {
			for x := 0; x < a.Bounds().Dx(); x++ {
				if a.At(x, y) != b.At(x, y) {
					t.Fatalf("%s: pixel %d,%d differs: %v vs %v", name, x, y, a.At(x, y), b.At(x, y))
				}
			}
		}
	}
}
