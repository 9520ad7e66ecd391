package ingest

import "fmt"

// validUID checks u against PS3.5 9.1: 1 to 64 characters, components of
// digits separated by dots, no component empty or with a leading zero. The
// returned error quotes at most the first 64 bytes of u.
func validUID(u string) error {
	if u == "" {
		return fmt.Errorf("empty")
	}
	if len(u) > 64 {
		return fmt.Errorf("%q... is longer than 64 characters", u[:64])
	}
	start := 0
	for i := 0; i <= len(u); i++ {
		if i < len(u) && u[i] != '.' {
			if u[i] < '0' || u[i] > '9' {
				return fmt.Errorf("%q is not digits and dots", u)
			}
			continue
		}
		switch {
		case i == start:
			return fmt.Errorf("%q has an empty component", u)
		case u[start] == '0' && i-start > 1:
			return fmt.Errorf("%q has a component with a leading zero", u)
		}
		start = i + 1
	}
	return nil
}
