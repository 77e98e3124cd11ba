package api

import (
	"bytes"
	"image"
	_ "image/gif"  // registers GIF for image.DecodeConfig
	_ "image/jpeg" // registers JPEG
	_ "image/png"  // registers PNG

	_ "golang.org/x/image/webp" // registers WebP

	"github.com/rentalportal/portal/store"
)

// sniffLen is how much of a file the API reads before deciding its type
// and, for an image, reading the dimensions from its header.
const sniffLen = 64 << 10

// Allowed types per upload kind. Images are what the thumbnail worker
// decodes; documents are condition reports and dispute evidence: PDF, or a
// photo (HEIC included, which phones produce and which is stored as is).
var allowedTypes = map[string]map[string]bool{
	store.UploadKindImage:    {"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true},
	store.UploadKindDocument: {"application/pdf": true, "image/jpeg": true, "image/png": true, "image/webp": true, "image/heic": true},
}

// extensions name the stored original after its sniffed type.
var extensions = map[string]string{
	"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
	"image/heic": ".heic", "application/pdf": ".pdf",
}

// sniff decides a file's type from its first bytes alone — never from the
// client's Content-Type or the file name — and returns "" for anything not
// on an allow-list (HTML, scripts, executables, archives, SVG, ...).
func sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\xFF\xD8\xFF")):
		return "image/jpeg"
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png"
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return "image/gif"
	case len(head) >= 16 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP" &&
		(string(head[12:16]) == "VP8 " || string(head[12:16]) == "VP8L" || string(head[12:16]) == "VP8X"):
		return "image/webp"
	case bytes.HasPrefix(head, []byte("%PDF-")):
		return "application/pdf"
	case len(head) >= 12 && string(head[4:8]) == "ftyp":
		switch string(head[8:12]) {
		case "heic", "heix", "heim", "heis", "mif1", "msf1":
			return "image/heic"
		}
	}
	return ""
}

// imagePixels reads an image's dimensions from the header in head; ok is
// false when the header is not within head (the worker checks then).
func imagePixels(head []byte) (w, h int, ok bool) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(head))
	if err != nil {
		return 0, 0, false
	}
	return cfg.Width, cfg.Height, true
}
