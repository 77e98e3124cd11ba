package imaging_test

import (
	"bytes"
	"image/jpeg"
	"testing"
	"time"

	"github.com/rentalportal/portal/imaging/imagingbench"
)

// BenchmarkVariants12MP makes the three variants of a generated 12 MP JPEG
// with each pipeline (ours and the nfnt/resize and x/image/draw ones it is
// compared with) and reports, beside ns/op, the time as a ratio to the pure
// image/jpeg decode of the same file measured in the same loop
// (decode_ratio, the target is ≤ 1.4 for ours) and the PSNR of the large
// variant before encoding against CatmullRom from the full image
// (psnr_large_dB, target ≥ 38). Run: go test -run '^$' -bench Variants12MP ./imaging/
func BenchmarkVariants12MP(b *testing.B) {
	data, err := imagingbench.TestJPEG(4000, 3000)
	if err != nil {
		b.Fatal(err)
	}
	full, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	refs := imagingbench.References(full)
	full = nil
	for _, p := range imagingbench.Pipelines(85) {
		b.Run(p.Name, func(b *testing.B) {
			pre, _, err := p.Run(data, true)
			if err != nil {
				b.Fatal(err)
			}
			psnr := imagingbench.PSNR(refs["large"], pre["large"])
			var decode, run time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				t := time.Now()
				if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				decode += time.Since(t)
				b.StartTimer()
				t = time.Now()
				if _, _, err := p.Run(data, false); err != nil {
					b.Fatal(err)
				}
				run += time.Since(t)
			}
			b.ReportMetric(float64(run)/float64(decode), "decode_ratio")
			b.ReportMetric(psnr, "psnr_large_dB")
		})
	}
}
