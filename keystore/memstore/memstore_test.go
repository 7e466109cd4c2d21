package memstore_test

import (
	"testing"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/memstore"
	"github.com/regoauth/regoauth/keystore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) keystore.Store { return memstore.New() })
}
