package api

import (
	"time"

	"github.com/gin-gonic/gin"
)

// RequestObserver is told about every answered request (the metrics
// registry satisfies it).
type RequestObserver interface {
	// ObserveRequest records one request by its route template ("" when no
	// route matched), method, status and latency.
	ObserveRequest(route, method string, status int, d time.Duration)
}

// metricsMiddleware labels requests by route template (c.FullPath), never
// the raw path, so an id in a URL does not make a new series. It runs
// outermost, so a recovered panic is counted as the 500 it became.
func metricsMiddleware(obs RequestObserver) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		obs.ObserveRequest(c.FullPath(), c.Request.Method, c.Writer.Status(), time.Since(start))
	}
}
