package archive

import (
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncFS says whether syncFS is available here.
const haveSyncFS = true

// syncFS writes back the whole file system that holds f and waits for it.
func syncFS(f *os.File) error { return unix.Syncfs(int(f.Fd())) }
