package imaging

import (
	"encoding/binary"
	"image"
)

// JPEGOrientation returns the EXIF orientation (1..8) of a JPEG from its
// leading bytes, or 1 when there is none or it cannot be read. It only
// walks the markers before the first frame header and never allocates more
// than the input.
func JPEGOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 1
	}
	p := 2
	for p+4 <= len(b) {
		if b[p] != 0xFF {
			return 1
		}
		marker := b[p+1]
		if marker == 0xFF { // fill byte
			p++
			continue
		}
		if marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 {
			p += 2
			continue
		}
		if marker == 0xDA || (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
			return 1 // scan or frame header: EXIF comes before these
		}
		n := int(binary.BigEndian.Uint16(b[p+2:]))
		if n < 2 || p+2+n > len(b) {
			return 1
		}
		seg := b[p+4 : p+2+n]
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if o := tiffOrientation(seg[6:]); o != 0 {
				return o
			}
		}
		p += 2 + n
	}
	return 1
}

// tiffOrientation reads tag 0x0112 of IFD0 of a TIFF structure; 0 if absent
// or malformed.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0
	}
	off := int(bo.Uint32(t[4:]))
	if off < 8 || off+2 > len(t) {
		return 0
	}
	count := int(bo.Uint16(t[off:]))
	for i := 0; i < count; i++ {
		e := off + 2 + 12*i
		if e+12 > len(t) {
			return 0
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		if typ := bo.Uint16(t[e+2:]); typ != 3 { // SHORT
			return 0
		}
		v := int(bo.Uint16(t[e+8:]))
		if v >= 1 && v <= 8 {
			return v
		}
		return 0
	}
	return 0
}

// swapsAxes reports whether an orientation turns the image by 90°.
func swapsAxes(o int) bool { return o >= 5 && o <= 8 }

// orientPlane returns src transformed by EXIF orientation o (1..8) so that
// it displays upright. Each pixel has ch bytes.
func orientPlane(src plane, o int) plane {
	if o <= 1 || o > 8 {
		return src
	}
	w, h, ch := src.w, src.h, src.ch
	dw, dh := w, h
	if swapsAxes(o) {
		dw, dh = h, w
	}
	dst := plane{pix: make([]uint8, dw*dh*ch), stride: dw * ch, w: dw, h: dh, ch: ch}
	if ch == 1 {
		orientBytes(dst, src, o)
		return dst
	}
	for sy := 0; sy < h; sy++ {
		row := src.pix[sy*src.stride : sy*src.stride+w*ch]
		for sx := 0; sx < w; sx++ {
			var dx, dy int
			switch o {
			case 2: // mirror horizontally
				dx, dy = w-1-sx, sy
			case 3: // rotate 180
				dx, dy = w-1-sx, h-1-sy
			case 4: // mirror vertically
				dx, dy = sx, h-1-sy
			case 5: // transpose
				dx, dy = sy, sx
			case 6: // rotate 90 clockwise
				dx, dy = h-1-sy, sx
			case 7: // transverse
				dx, dy = h-1-sy, w-1-sx
			case 8: // rotate 90 counter-clockwise
				dx, dy = sy, w-1-sx
			}
			copy(dst.pix[dy*dst.stride+dx*ch:dy*dst.stride+dx*ch+ch], row[sx*ch:sx*ch+ch])
		}
	}
	return dst
}

// orientBytes is orientPlane for one byte per pixel: each source row is
// written along a destination row or column with a fixed step.
func orientBytes(dst, src plane, o int) {
	w, h := src.w, src.h
	for sy := 0; sy < h; sy++ {
		row := src.pix[sy*src.stride : sy*src.stride+w]
		// The destination of (0, sy) and the step from one sx to the next.
		var at, step int
		switch o {
		case 2:
			at, step = sy*dst.stride+w-1, -1
		case 3:
			at, step = (h-1-sy)*dst.stride+w-1, -1
		case 4:
			at, step = (h-1-sy)*dst.stride, 1
		case 5:
			at, step = sy, dst.stride
		case 6:
			at, step = h-1-sy, dst.stride
		case 7:
			at, step = (w-1)*dst.stride+h-1-sy, -dst.stride
		case 8:
			at, step = (w-1)*dst.stride+sy, -dst.stride
		}
		for _, v := range row {
			dst.pix[at] = v
			at += step
		}
	}
}

// orient applies EXIF orientation o to one of the images the resizers make.
func orient(img image.Image, o int) image.Image {
	if o <= 1 || o > 8 {
		return img
	}
	switch m := img.(type) {
	case *image.YCbCr:
		w, h := m.Rect.Dx(), m.Rect.Dy()
		cw, ch := chromaSize(w, h, m.SubsampleRatio)
		y := orientPlane(plane{pix: m.Y, stride: m.YStride, w: w, h: h, ch: 1}, o)
		cb := orientPlane(plane{pix: m.Cb, stride: m.CStride, w: cw, h: ch, ch: 1}, o)
		cr := orientPlane(plane{pix: m.Cr, stride: m.CStride, w: cw, h: ch, ch: 1}, o)
		// The resizers make 4:4:4 (and 4:2:0 would stay 4:2:0 under a quarter turn).
		return &image.YCbCr{Y: y.pix, Cb: cb.pix, Cr: cr.pix, YStride: y.stride, CStride: cb.stride,
			SubsampleRatio: m.SubsampleRatio, Rect: image.Rect(0, 0, y.w, y.h)}
	case *image.Gray:
		p := orientPlane(plane{pix: m.Pix, stride: m.Stride, w: m.Rect.Dx(), h: m.Rect.Dy(), ch: 1}, o)
		return &image.Gray{Pix: p.pix, Stride: p.stride, Rect: image.Rect(0, 0, p.w, p.h)}
	case *image.RGBA:
		p := orientPlane(plane{pix: m.Pix, stride: m.Stride, w: m.Rect.Dx(), h: m.Rect.Dy(), ch: 4}, o)
		return &image.RGBA{Pix: p.pix, Stride: p.stride, Rect: image.Rect(0, 0, p.w, p.h)}
	}
	return img
}
