package storage

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/reference"
)

// SHA256Hex returns the hex of a sha256 digest, what backends name blobs
// by, after reference.ValidDigest, which makes it safe as an object or
// file name. A digest of another algorithm cannot be stored.
func SHA256Hex(d digest.Digest) (string, error) {
	if err := reference.ValidDigest(d); err != nil {
		return "", err
	}
	if alg := d.Algorithm(); alg != digest.SHA256 {
		return "", fmt.Errorf("blob %s: only sha256 blobs are stored, not %s", d, alg)
	}
	return d.Encoded(), nil
}

// VerifyBlob checks what a BlobWriter computed (info: the sha256 digest and
// size of the bytes written) against the caller's expectations, as every
// backend's Commit must: an expected digest, if given, must be a valid
// sha256 digest equal to info's, and an expected size, if not negative,
// must equal info's. Mismatches wrap ErrDigestMismatch.
func VerifyBlob(info BlobInfo, expected digest.Digest, expectedSize int64) error {
	if expected != "" {
		if _, err := SHA256Hex(expected); err != nil {
			return fmt.Errorf("expected digest: %w", err)
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
