package storage

import (
	"fmt"

	"github.com/opencontainers/go-digest"
)

// VerifyBlob checks what a BlobWriter computed (info: the sha256 digest and
// size of the bytes written) against the caller's expectations, as every
// backend's Commit must: an expected digest, if given, must be a valid
// sha256 digest equal to info's, and an expected size, if not negative,
// must equal info's. Mismatches wrap ErrDigestMismatch.
func VerifyBlob(info BlobInfo, expected digest.Digest, expectedSize int64) error {
	if expected != "" {
		if err := expected.Validate(); err != nil {
			return fmt.Errorf("expected digest %q: %w", expected, err)
		}
		if alg := expected.Algorithm(); alg != digest.SHA256 {
			return fmt.Errorf("expected digest %s: algorithm %s is not supported, only sha256", expected, alg)
		}
		if expected != info.Digest {
			return fmt.Errorf("content hashes to %s, expected %s: %w", info.Digest, expected, ErrDigestMismatch)
		}
	}
	if expectedSize >= 0 && expectedSize != info.Size {
		return fmt.Errorf("content of %s is %d bytes, expected %d: %w", info.Digest, info.Size, expectedSize, ErrDigestMismatch)
	}
	return nil
}
