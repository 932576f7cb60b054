package gcstest

import (
	"fmt"
	"testing"

	"github.com/nixport/nixport/storage/storagetest/faultproxy"
)

// The fault proxy is the one every storage backend's tests share; these
// names keep the GCS tests' spelling of it.
type (
	Faults        = faultproxy.Faults
	Proxy         = faultproxy.Proxy
	ProxyStats    = faultproxy.Stats
	RequestRecord = faultproxy.RequestRecord
)

// StartProxy starts a fault proxy in front of the emulator, stopped when
// the test ends. Injected errors have GCS's JSON error body.
func (e *Emulator) StartProxy(t testing.TB, faults Faults) *Proxy {
	t.Helper()
	return faultproxy.Start(t, faultproxy.Options{Target: e.URL, ErrorBody: gcsErrorBody}, faults)
}

func gcsErrorBody(status int) (string, []byte) {
	return "application/json", fmt.Appendf(nil, `{"error":{"code":%d,"message":"injected by the test proxy"}}`, status)
}
