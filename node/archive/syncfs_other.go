//go:build !linux

package archive

import (
	"errors"
	"os"
)

// haveSyncFS says whether syncFS is available here.
const haveSyncFS = false

func syncFS(*os.File) error { return errors.New("syncfs is not available on this system") }

func startWriteback(*os.File) {}
