package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/jpeg"
	"runtime"
	"sync"
)

// parallelEncodeMin is the size from which a JPEG is encoded in bands on
// several cores: below it the goroutines cost more than they save.
const parallelEncodeMin = 400_000

// encodeJPEG writes img as a baseline JPEG. A large image is cut into one
// horizontal band per core, each band encoded by image/jpeg at once, and
// the bands' entropy-coded data joined with restart markers (a DRI segment
// sets the interval to one band): a standard JPEG, decoding to exactly the
// pixels of a one-piece encode, in about half the time on two cores. The
// JPEG encoder's Huffman and quantization tables depend only on the
// quality, so every band shares the first band's headers.
func encodeJPEG(buf *bytes.Buffer, img image.Image, quality int) error {
	opt := &jpeg.Options{Quality: quality}
	b := img.Bounds()
	procs := runtime.GOMAXPROCS(0)
	sub, ok := img.(interface {
		SubImage(image.Rectangle) image.Image
	})
	if procs < 2 || !ok || b.Dx()*b.Dy() < parallelEncodeMin {
		return jpeg.Encode(buf, img, opt)
	}
	mcu := 16 // image/jpeg writes colour as 4:2:0: 16×16 MCUs
	if _, gray := img.(*image.Gray); gray {
		mcu = 8
	}
	mcuRows := (b.Dy() + mcu - 1) / mcu
	mcuCols := (b.Dx() + mcu - 1) / mcu
	bands := min(procs, mcuRows)
	rowsPerBand := (mcuRows + bands - 1) / bands
	interval := rowsPerBand * mcuCols
	if bands < 2 || interval > 0xFFFF {
		return jpeg.Encode(buf, img, opt)
	}
	parts := make([][]byte, (mcuRows+rowsPerBand-1)/rowsPerBand)
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i := range parts {
		r := image.Rect(b.Min.X, b.Min.Y+i*rowsPerBand*mcu, b.Max.X, min(b.Max.Y, b.Min.Y+(i+1)*rowsPerBand*mcu))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			out.Grow(r.Dx() * r.Dy() / 4)
			errs[i] = jpeg.Encode(&out, sub.SubImage(r), opt)
			parts[i] = out.Bytes()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return joinBands(buf, parts, b.Dy(), interval)
}

// joinBands writes the first band's headers with the full height, a DRI
// segment, and each band's scan data followed by the next restart marker.
func joinBands(buf *bytes.Buffer, parts [][]byte, height, interval int) error {
	var header []byte
	for i, p := range parts {
		sofAt, sosEnd, err := scanBounds(p)
		if err != nil {
			return err
		}
		if i == 0 {
			header = bytes.Clone(p[:sosEnd])
			binary.BigEndian.PutUint16(header[sofAt+5:], uint16(height))
			sosAt := bytes.LastIndex(header, []byte{0xFF, 0xDA})
			buf.Write(header[:sosAt])
			buf.Write([]byte{0xFF, 0xDD, 0x00, 0x04, byte(interval >> 8), byte(interval)})
			buf.Write(header[sosAt:])
		} else {
			buf.Write([]byte{0xFF, 0xD0 + byte((i-1)%8)})
		}
		buf.Write(p[sosEnd : len(p)-2]) // the scan data, without EOI
	}
	buf.Write([]byte{0xFF, 0xD9})
	return nil
}

// scanBounds finds, in a JPEG written by image/jpeg, the offset of the SOF0
// marker and the end of the SOS header (where the scan data starts).
func scanBounds(p []byte) (sofAt, sosEnd int, err error) {
	if len(p) < 4 || p[0] != 0xFF || p[1] != 0xD8 || p[len(p)-2] != 0xFF || p[len(p)-1] != 0xD9 {
		return 0, 0, errors.New("imaging: unexpected JPEG framing")
	}
	sofAt = -1
	for i := 2; i+4 <= len(p); {
		if p[i] != 0xFF {
			return 0, 0, errors.New("imaging: unexpected JPEG segment")
		}
		n := int(binary.BigEndian.Uint16(p[i+2:]))
		switch p[i+1] {
		case 0xC0:
			sofAt = i
		case 0xDA:
			if sofAt < 0 {
				return 0, 0, errors.New("imaging: JPEG without SOF0")
			}
			return sofAt, i + 2 + n, nil
		}
		i += 2 + n
	}
	return 0, 0, errors.New("imaging: JPEG without SOS")
}
