package metrics

import (
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// peakRSS is the process's high-water mark of resident memory, which
// Prometheus' process collector does not report: natter bench shows it
// beside the RSS at the end of a run. Linux only: getrusage's ru_maxrss
// is in KiB there (bytes on the BSDs); peakrss_other.go has none.
func peakRSS() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "process_peak_resident_memory_bytes",
		Help: "High-water mark of the process's resident memory (getrusage ru_maxrss)."}, func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return float64(ru.Maxrss) * 1024
	})
}
