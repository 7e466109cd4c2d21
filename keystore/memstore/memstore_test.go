package memstore_test

import (
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/memstore"
	"github.com/regoauth/regoauth/keystore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) keystore.Store { return memstore.NewAt(now) })
}
