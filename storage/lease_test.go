package storage_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/storage"
)

func TestNewLeaseBase(t *testing.T) {
	tests := []struct {
		name, lease, holder string
		ttl                 time.Duration
		wantErrIs           error
		wantErrIn           string
	}{
		{name: "valid", lease: "build/shell/git", holder: "instance-a", ttl: time.Minute},
		{name: "longest holder", lease: "x", holder: strings.Repeat("h", 256), ttl: time.Nanosecond},
		{name: "empty name", lease: "", holder: "a", ttl: time.Minute, wantErrIs: storage.ErrInvalidName},
		{name: "name escaping", lease: "../x", holder: "a", ttl: time.Minute, wantErrIs: storage.ErrInvalidName},
		{name: "empty holder", lease: "x", holder: "", ttl: time.Minute, wantErrIn: "empty holder"},
		{name: "holder too long", lease: "x", holder: strings.Repeat("h", 257), ttl: time.Minute, wantErrIn: "longer than 256"},
		{name: "zero ttl", lease: "x", holder: "a", ttl: 0, wantErrIn: "not positive"},
		{name: "negative ttl", lease: "x", holder: "a", ttl: -time.Second, wantErrIn: "not positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := storage.NewLeaseBase(tt.lease, tt.holder, tt.ttl)
			checkErr(t, err, tt.wantErrIs, tt.wantErrIn)
			if err != nil {
				if l != nil {
					t.Errorf("a lease base with the error")
				}
				return
			}
			if l.Name() != tt.lease || l.Holder() != tt.holder {
				t.Errorf("Name, Holder = %q, %q; want %q, %q", l.Name(), l.Holder(), tt.lease, tt.holder)
			}
			if !l.Expires().IsZero() {
				t.Errorf("Expires() = %s before any record, want zero", l.Expires())
			}
		})
	}
}

func TestLeaseBaseRecords(t *testing.T) {
	const ttl = time.Hour
	l, err := storage.NewLeaseBase("build/x", "instance-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	r := l.NextRecord()
	after := time.Now()
	if r.Name != "build/x" || r.Holder != "instance-a" {
		t.Errorf("NextRecord = %+v, want name build/x and holder instance-a", r)
	}
	if r.Expires.Before(before.Add(ttl)) || r.Expires.After(after.Add(ttl)) {
		t.Errorf("NextRecord expires %s, want ttl from now (%s to %s)", r.Expires, before.Add(ttl), after.Add(ttl))
	}
	if r.Expires.Location() != time.UTC {
		t.Errorf("NextRecord expires in %s, want UTC", r.Expires.Location())
	}
	if r.Token == "" {
		t.Error("NextRecord has no token")
	}
	if next := l.NextRecord(); next.Token == r.Token {
		t.Errorf("two records share token %q", r.Token)
	}

	// Making a record changes nothing until it is held.
	if !l.Expires().IsZero() {
		t.Errorf("Expires() = %s before Hold, want zero", l.Expires())
	}
	for _, rec := range []storage.LeaseRecord{r, {}, {Holder: "instance-a"}} {
		if l.Ours(rec) {
			t.Errorf("Ours(%+v) before Hold", rec)
		}
	}

	if err := l.Update("holding", func() error { l.Hold(r); return nil }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := l.Expires(); !got.Equal(r.Expires) {
		t.Errorf("Expires() = %s after Hold, want %s", got, r.Expires)
	}
	other := l.NextRecord()
	for _, tt := range []struct {
		rec  storage.LeaseRecord
		want bool
	}{
		{r, true},
		{storage.LeaseRecord{Token: r.Token}, true}, // the token is what tells
		{other, false},
		{storage.LeaseRecord{}, false},
		{storage.LeaseRecord{Name: r.Name, Holder: r.Holder, Expires: r.Expires}, false},
	} {
		if got := l.Ours(tt.rec); got != tt.want {
			t.Errorf("Ours(%+v) = %v, want %v", tt.rec, got, tt.want)
		}
	}

	errRelease := errors.New("release failed")
	err = l.Update("releasing", func() error { l.Released(); return errRelease })
	if !errors.Is(err, errRelease) || err.Error() != "releasing lease build/x: release failed" {
		t.Errorf("Update error = %v, want %q wrapping the error of its function", err, "releasing lease build/x: release failed")
	}
	if !l.Expires().IsZero() {
		t.Errorf("Expires() = %s after Released, want zero", l.Expires())
	}
}

func TestLeaseBaseCanTake(t *testing.T) {
	// instance-dead is gone; everyone else is not.
	gone := storage.TakeOverGone(func(holder string) bool {
		if holder == "instance-a" {
			t.Errorf("gone asked about the holder itself")
		}
		return holder == "instance-dead"
	})
	l, err := storage.NewLeaseBase("build/x", "instance-a", time.Hour, gone)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := storage.NewLeaseBase("build/x", "instance-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		name       string
		current    storage.LeaseRecord
		wantHeld   bool
		wantReason string
		plainHeld  bool // held against a lease without TakeOverGone
	}{
		{"another holder's, unexpired", storage.LeaseRecord{Holder: "instance-b", Expires: now.Add(time.Minute)}, true, "", true},
		{"another holder's, expired", storage.LeaseRecord{Holder: "instance-b", Expires: now.Add(-time.Millisecond)}, false, "expired", false},
		{"our holder's, unexpired", storage.LeaseRecord{Holder: "instance-a", Expires: now.Add(time.Minute)}, false, "own", false},
		{"our holder's, expired", storage.LeaseRecord{Holder: "instance-a", Expires: now.Add(-time.Minute)}, false, "own", false},
		{"without an expiry (damaged)", storage.LeaseRecord{Holder: "instance-b"}, false, "expired", false},
		{"without a holder, unexpired", storage.LeaseRecord{Expires: now.Add(time.Minute)}, true, "", true},
		{"a gone holder's, unexpired", storage.LeaseRecord{Holder: "instance-dead", Expires: now.Add(time.Hour)}, false, "holder gone", true},
		{"a gone holder's, expired", storage.LeaseRecord{Holder: "instance-dead", Expires: now.Add(-time.Minute)}, false, "expired", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := plain.CanTake(tt.current); (err != nil) != tt.plainHeld {
				t.Errorf("CanTake without TakeOverGone = %v, want held %v", err, tt.plainHeld)
			}
			reason, err := l.TakeoverReason(tt.current)
			if reason != tt.wantReason {
				t.Errorf("TakeoverReason = %q, want %q", reason, tt.wantReason)
			}
			if cerr := l.CanTake(tt.current); (cerr == nil) != (err == nil) {
				t.Errorf("CanTake = %v, TakeoverReason's error %v", cerr, err)
			}
			if !tt.wantHeld {
				if err != nil {
					t.Errorf("CanTake = %v, want nil", err)
				}
				return
			}
			var held *storage.LeaseHeldError
			if !errors.As(err, &held) || !errors.Is(err, storage.ErrLeaseHeld) {
				t.Fatalf("CanTake = %v, want a *LeaseHeldError wrapping ErrLeaseHeld", err)
			}
			want := storage.LeaseHeldError{Name: "build/x", Holder: tt.current.Holder, Expires: tt.current.Expires}
			if *held != want {
				t.Errorf("CanTake = %+v, want %+v", *held, want)
			}
		})
	}
}
