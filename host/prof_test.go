package host

import (
	"testing"
	"time"
)

func BenchmarkProfHello(b *testing.B) {
	w := benchWorker(b, "examples/hello", "")
	u := serveLoopback(b, w)
	wrk(b, u+"/", 2*time.Second)
	b.ResetTimer()
	b.ReportMetric(wrk(b, u+"/", 6*time.Second), "req/s")
}
