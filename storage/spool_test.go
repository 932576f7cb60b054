package storage

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/procalive"
)

func TestRemoveDeadSpools(t *testing.T) {
	dir := t.TempDir()
	log := logrus.New()
	log.Out = io.Discard
	mine, err := CreateSpool(dir, "gcs")
	if err != nil {
		t.Fatal(err)
	}
	mine.Close()
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	self, err := procalive.Self()
	if err != nil {
		t.Skip("no /proc: nothing is ever judged dead")
	}
	dead := self
	dead.PID, dead.Start = exited.Process.Pid, 1
	deadFile := filepath.Join(dir, spoolPrefix("gcs")+dead.String()+"-123")
	otherKind := filepath.Join(dir, spoolPrefix("s3")+dead.String()+"-123")
	old := filepath.Join(dir, "nixport-gcs-blob-456") // an older server's: no writer named
	for _, f := range []string{deadFile, otherKind, old} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n := RemoveDeadSpools(dir, "gcs", log); n != 1 {
		t.Errorf("removed %d spool files, want the dead writer's one", n)
	}
	for f, want := range map[string]bool{deadFile: false, otherKind: true, old: true, mine.Name(): true} {
		if _, err := os.Stat(f); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(f), err == nil, want)
		}
	}
}
