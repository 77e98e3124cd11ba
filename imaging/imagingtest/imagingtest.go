// Package imagingtest makes the image fixtures tests need: real JPEG, PNG,
// GIF and WebP files, an EXIF-oriented JPEG, and a PNG whose header
// declares a decompression bomb.
package imagingtest

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
)

// WebPLossy is a small lossy WebP (decodes to YCbCr), and WebPAlpha a
// lossless WebP with transparency, both from golang.org/x/image's testdata.
var (
	//go:embed testdata/blue-purple-pink.lossy.webp
	WebPLossy []byte
	//go:embed testdata/gopher-doc.with-alpha.lossless.webp
	WebPAlpha []byte
)

// Gradient is a w×h opaque image with a diagonal colour gradient.
func Gradient(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / max(w-1, 1)), uint8(y * 255 / max(h-1, 1)), 128, 255})
		}
	}
	return img
}

// JPEG encodes img as a JPEG of quality 90.
func JPEG(img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// PNG encodes img as a PNG.
func PNG(img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// TransparentPNG is a w×h PNG whose right half is fully transparent.
func TransparentPNG(w, h int) []byte {
	img := Gradient(w, h)
	for y := 0; y < h; y++ {
		for x := w / 2; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{})
		}
	}
	return PNG(img)
}

// AnimatedGIF is a w×h GIF of two frames: red, then blue.
func AnimatedGIF(w, h int) []byte {
	frame := func(c color.Color) *image.Paletted {
		p := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				p.Set(x, y, c)
			}
		}
		return p
	}
	var b bytes.Buffer
	err := gif.EncodeAll(&b, &gif.GIF{Image: []*image.Paletted{frame(color.RGBA{255, 0, 0, 255}), frame(color.RGBA{0, 0, 255, 255})},
		Delay: []int{10, 10}})
	if err != nil {
		panic(err)
	}
	return b.Bytes()
}

// WithEXIF inserts an EXIF APP1 segment with the given orientation right
// after the SOI marker of a JPEG.
func WithEXIF(jpg []byte, orientation int) []byte {
	var tiff bytes.Buffer
	tiff.WriteString("MM\x00\x2a")
	_ = binary.Write(&tiff, binary.BigEndian, uint32(8)) // IFD0 offset
	_ = binary.Write(&tiff, binary.BigEndian, uint16(1)) // one entry
	_ = binary.Write(&tiff, binary.BigEndian, []uint16{0x0112, 3})
	_ = binary.Write(&tiff, binary.BigEndian, uint32(1))
	_ = binary.Write(&tiff, binary.BigEndian, []uint16{uint16(orientation), 0})
	_ = binary.Write(&tiff, binary.BigEndian, uint32(0)) // no next IFD
	seg := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	out := []byte{0xFF, 0xD8, 0xFF, 0xE1, byte((len(seg) + 2) >> 8), byte(len(seg) + 2)}
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// BombPNG is a tiny PNG file whose header declares w×h pixels (its data is
// a few bytes): decoding it would allocate w×h×4 bytes.
func BombPNG(w, h int) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		_ = binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}
