package pid

import (
	"fmt"
	"strconv"

	"github.com/vula-eid/vula/internal/statuslist"
)

// statusBits is the compressed list (statuslist: one bit an entry) of size entries with the
// revoked ones set to 1.
func statusBits(size int, revoked []int) ([]byte, error) {
	l, err := statuslist.New(size, 1)
	if err != nil {
		return nil, err
	}
	for _, i := range revoked {
		if i < 0 || i >= size {
			return nil, fmt.Errorf("pid: status index %d outside a list of %d", i, size)
		}
		if err := l.Set(int64(i), 1); err != nil {
			return nil, err
		}
	}
	return l.Compress()
}

// statusURI is where list is published.
func (s *Service) statusURI(list int) string {
	return s.cfg.Issuer + "/pid/status/" + strconv.Itoa(list)
}
