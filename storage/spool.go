package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/procalive"
)

// Spool files are where the networked backends write a blob locally
// before they upload it (the upload's name is the digest, known only at
// the end). Their names hold their writer (procalive), so that a server
// that starts removes at once what a crashed one left behind.

func spoolPrefix(kind string) string { return "nixport-" + kind + "-spool-" }

// CreateSpool creates a spool file for a backend of kind ("gcs", "s3") in
// dir (empty: the system's temporary directory).
func CreateSpool(dir, kind string) (*os.File, error) {
	f, err := os.CreateTemp(dir, procalive.NamePrefix(spoolPrefix(kind))+"*")
	if err != nil {
		return nil, fmt.Errorf("creating spool file: %w", err)
	}
	return f, nil
}

// RemoveDeadSpools removes the spool files in dir (empty: the system's
// temporary directory) of kind's writers known to be dead, and says how
// many it removed. Others' (live servers', other hosts') are left alone.
func RemoveDeadSpools(dir, kind string, log logrus.FieldLogger) int {
	if dir == "" {
		dir = os.TempDir()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.WithError(err).WithField("dir", dir).Warn("listing spool files of crashed servers")
		return 0
	}
	removed := 0
	prefix := spoolPrefix(kind)
	for _, e := range entries {
		if e.IsDir() || !strings.HasPrefix(e.Name(), prefix) || !procalive.DeadWriter(e.Name(), prefix) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.Remove(path); err != nil {
			log.WithError(err).WithField("file", path).Warn("removing a crashed server's spool file")
			continue
		}
		removed++
	}
	if removed > 0 {
		log.WithFields(logrus.Fields{"dir": dir, "files": removed}).Info("removed the spool files of crashed servers")
	}
	return removed
}
