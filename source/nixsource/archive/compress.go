package archive

import (
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/pgzip"
)

// compressor starts a gzip stream into w at a level from 1 to 9.
type compressor func(w io.Writer, level int) (io.WriteCloser, error)

// Layers are compressed with pgzip (github.com/klauspost/pgzip v1.3.0, on
// klauspost/compress's deflate): one gzip member made of independently
// compressed blocks, each primed with the last 32 KiB of the previous one,
// as pigz does, so any gunzip reads it. Blocks compress on all cores while
// the tar is read and hashed. Archiving ~100 MB of shared libraries on 2
// cores at level 6 (BenchmarkWriteLayer): pgzip about 205 MB/s (ratio
// 0.364), klauspost/compress gzip 114 MB/s (one core, same ratio),
// compress/gzip 40 MB/s (0.355), and `tar -c | pigz -p 2` 65 MB/s (0.346).
//
// The output depends on the level and the block size only, never on the
// number of cores: block boundaries fall every blockSize bytes of input.
const (
	// DefaultLevel is the gzip level of layers.
	DefaultLevel = 6
	// blockSize is pgzip's block size, fixed here because it is part of the
	// output (and so of every layer digest).
	blockSize = 1 << 20

	compressorName = "pgzip1-b1m"
)

// pgzipPools keep finished pgzip writers per level: a writer's block
// buffers and deflate state are several MB, and an image has up to a
// hundred layers, most of them small.
var pgzipPools [10]sync.Pool

// pooledPgzip is a pgzip writer that returns to its pool once closed
// cleanly.
type pooledPgzip struct {
	*pgzip.Writer
	level int
}

func (p *pooledPgzip) Close() error {
	z := p.Writer
	if z == nil {
		return nil
	}
	p.Writer = nil
	err := z.Close()
	if err == nil {
		z.Reset(io.Discard) // unpin the destination
		pgzipPools[p.level].Put(z)
	}
	return err
}

// pgzipCompressor is the default compressor.
func pgzipCompressor(w io.Writer, level int) (io.WriteCloser, error) {
	if level < 1 || level > 9 {
		return nil, fmt.Errorf("gzip level %d: want 1 to 9", level)
	}
	z, ok := pgzipPools[level].Get().(*pgzip.Writer)
	if !ok {
		var err error
		// Made on io.Discard, then Reset: pgzip keeps the writer it was made
		// with in its deflate pool, and a pooled writer must not pin the
		// destination of its first layer.
		if z, err = pgzip.NewWriterLevel(io.Discard, level); err != nil {
			return nil, err
		}
	}
	z.Reset(w)
	if err := z.SetConcurrency(blockSize, max(2, runtime.GOMAXPROCS(0))); err != nil {
		return nil, err
	}
	// No timestamp (pgzip writes the zero time.Time as a bogus one).
	z.ModTime = time.Unix(0, 0)
	return &pooledPgzip{Writer: z, level: level}, nil
}

var defaultCompressor compressor = pgzipCompressor
