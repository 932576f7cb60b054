// Package bytesize reads and writes amounts of bytes the way people write
// them: "50GiB", "500 MB", "1.5TiB", "1048576". It is the one parser of
// sizes in nixport: every setting that takes a size (NIXPORT_NIX_STORE_MAX,
// NIXPORT_NIX_STORE_LOW) reads it here, and so does the Nix driver when Nix
// reports what it freed ("3.45 MiB").
//
// Binary units (KiB to EiB: powers of 1024) and decimal ones (kB to EB:
// powers of 1000) are both accepted, in any case; a bare letter (K, M, G)
// is refused as ambiguous rather than guessed.
package bytesize

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

// maxInput bounds what Parse reads: no size needs more, and a long input
// would only cost big-number arithmetic.
const maxInput = 64

// units maps a lower-cased unit to its multiplier.
var units = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15, "eb": 1e18,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50, "eib": 1 << 60,
}

// Usage says what Parse accepts, for error messages of settings.
const Usage = "accepts a size in bytes, such as 50GiB, 500MB or 1048576 (binary units KiB-PiB, decimal kB-PB)"

// Parse reads a size: a non-negative number, optionally with a fraction
// ("1.5"), then optionally spaces and a unit. Fractions of a byte are
// dropped. The result fits an int64; anything else is an error.
func Parse(s string) (int64, error) {
	if len(s) > maxInput {
		return 0, fmt.Errorf("size %.20q… is too long", s)
	}
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	intDigits := i
	if i < len(t) && t[i] == '.' {
		i++
		j := i
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		if i == j {
			return 0, fmt.Errorf("size %q: a decimal point needs digits after it", s)
		}
	}
	if intDigits == 0 {
		return 0, fmt.Errorf("size %q does not start with a number", s)
	}
	number := t[:i]
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := units[unit]
	if !ok {
		switch unit {
		case "k", "m", "g", "t", "p", "e":
			u := strings.ToUpper(unit)
			return 0, fmt.Errorf("size %q: unit %q is ambiguous: write %sB (powers of 1000) or %siB (powers of 1024)", s, t[i:], u, u)
		}
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, kB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB or EiB)", s, strings.TrimSpace(t[i:]))
	}
	r, ok := new(big.Rat).SetString(number)
	if !ok {
		return 0, fmt.Errorf("size %q: not a number", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // non-negative: truncation is the floor
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large (at most %d bytes)", s, int64(math.MaxInt64))
	}
	return n.Int64(), nil
}

// Format writes n for people: bytes below 1 KiB ("512 B"), else two
// decimals of the largest binary unit that keeps the number at least 1
// ("1.50 GiB"). Parse reads it back to within 0.5%.
func Format(n int64) string {
	if n < 0 {
		return "-" + Format(-max(n, -math.MaxInt64))
	}
	if n < 1<<10 {
		return fmt.Sprintf("%d B", n)
	}
	names := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	u := 0
	for v >= 1024 && u < len(names)-1 {
		v /= 1024
		u++
	}
	return fmt.Sprintf("%.2f %s", v, names[u])
}
