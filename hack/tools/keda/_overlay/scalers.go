// Added to github.com/kedacore/keda/v2/pkg/scalers in the modelpilot build of KEDA (hack/tools/keda/overlay):
// what the kept scalers (prometheus, cpu/memory) use from the files the overlay leaves out.
package scalers

// From azure_queue_scaler.go.
const externalMetricType = "External"
