package caller

import (
	"context"
	"testing"
)

func TestKeyAndContext(t *testing.T) {
	for _, tt := range []struct {
		c    Caller
		want string
	}{
		{Caller{User: "alice", Addr: "10.0.0.1"}, "user:alice"},
		{Caller{Addr: "10.0.0.1"}, "addr:10.0.0.1"},
		{Caller{Addr: "::1"}, "addr:::1"},
	} {
		if got := tt.c.Key(); got != tt.want {
			t.Errorf("%+v.Key() = %q, want %q", tt.c, got, tt.want)
		}
		got, ok := FromContext(NewContext(context.Background(), tt.c))
		if !ok || got != tt.c {
			t.Errorf("FromContext = %+v, %v", got, ok)
		}
	}
	if _, ok := FromContext(context.Background()); ok {
		t.Error("a caller in an empty context")
	}
}
