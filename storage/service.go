package storage

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
)

// What the backends that reach a storage service over the network (GCS,
// S3) do alike around their SDKs.

// ServiceLog returns the log of a backend on a bucket: log (nil: a log
// that discards everything) with the backend's name and the bucket as
// fields of every line.
func ServiceLog(log logrus.FieldLogger, backend, bucket string) logrus.FieldLogger {
	if log == nil {
		discard := logrus.New()
		discard.Out = io.Discard
		log = discard
	}
	return log.WithFields(logrus.Fields{"backend": backend, "bucket": bucket})
}

// ParseEndpoint parses the base URL of a service other than the cloud's
// own (an emulator, an S3-compatible server): an http or https URL with a
// host.
func ParseEndpoint(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q is not an http(s) URL", endpoint)
	}
	return u, nil
}

// MarkServiceError marks an error of a service's SDK for the protocols
// here (TryVersionedLease, CreateObjectOnce): wrapped in
// ErrConditionFailed if conditionFailed says it is a failed condition (a
// 412), in ErrNotFound if notFound (nil: never) says the object does not
// exist, and as it is otherwise. The service's error stays in the chain,
// and in the message.
func MarkServiceError(err error, conditionFailed, notFound func(error) bool) error {
	switch {
	case err == nil:
		return nil
	case conditionFailed(err):
		return fmt.Errorf("%w: %w", ErrConditionFailed, err)
	case notFound != nil && notFound(err):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// ListedObjectNames returns what ListObjects answers from the keys a
// service listed under the prefix of a backend's objects (keyPrefix,
// "objects/"): each key without keyPrefix, only those a backend could have
// written (an object put in the bucket by other means, under a name that
// ValidObjectName refuses, is not one of ours), sorted in byte order as
// the interface promises, whatever order the service listed them in.
func ListedObjectNames(keys []string, keyPrefix string) []string {
	var names []string
	for _, key := range keys {
		name, ok := strings.CutPrefix(key, keyPrefix)
		if ok && ValidObjectName(name) == nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
