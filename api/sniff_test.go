package api

import (
	"testing"

	"github.com/rentalportal/portal/imaging/imagingtest"
)

func TestSniff(t *testing.T) {
	t.Parallel()
	cases := map[string][]byte{
		"image/jpeg":      imagingtest.JPEG(imagingtest.Gradient(8, 8)),
		"image/png":       imagingtest.PNG(imagingtest.Gradient(8, 8)),
		"image/gif":       imagingtest.AnimatedGIF(4, 4),
		"image/webp":      imagingtest.WebPLossy,
		"application/pdf": []byte("%PDF-1.7\n"),
		"image/heic":      []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00"),
		"":                []byte("<html><body>%PDF-1.7</body></html>"),
	}
	for _, bad := range []string{"<?php ?>", "<svg/>", "MZ\x90", "PK\x03\x04", "#!/bin/sh", "RIFF\x00\x00\x00\x00WAVEfmt ", "\xef\xbb\xbf<html>", ""} {
		if got := sniff([]byte(bad)); got != "" {
			t.Errorf("sniff(%q) = %q", bad, got)
		}
	}
	for want, b := range cases {
		if got := sniff(b); got != want {
			t.Errorf("sniff(%q...) = %q, want %q", b[:min(len(b), 12)], got, want)
		}
	}
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte("%PDF-1.4"))
	f.Add([]byte("\xFF\xD8\xFF\xE0"))
	f.Add([]byte("RIFF\x00\x00\x00\x00WEBPVP8 "))
	f.Fuzz(func(t *testing.T, b []byte) {
		ct := sniff(b)
		if ct != "" && extensions[ct] == "" {
			t.Fatalf("sniffed %q, which has no extension", ct)
		}
		if ct != "" && !allowedTypes["image"][ct] && !allowedTypes["document"][ct] {
			t.Fatalf("sniffed %q, which no kind allows", ct)
		}
	})
}
