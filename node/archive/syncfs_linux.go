package archive

import (
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncFS says whether syncFS is available here.
const haveSyncFS = true

// syncFS writes back the whole file system that holds f and waits for it.
func syncFS(f *os.File) error { return unix.Syncfs(int(f.Fd())) }

// startWriteback asks the kernel to begin writing f's dirty pages back
// without waiting for them, so that the syncfs at the end of a batch has
// less left to do.
func startWriteback(f *os.File) {
	unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
