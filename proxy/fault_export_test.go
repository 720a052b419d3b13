package proxy

import "time"

// SetProbeTiming shortens the caps probes' retry interval and timeout for
// a test. Call it before Start.
func SetProbeTiming(p *Proxy, retry, timeout time.Duration) {
	p.caps.retry, p.caps.timeout = retry, timeout
}
