package swan

import (
	"context"
	"fmt"

	"github.com/strongswan/govici/vici"
)

// LoadPool loads (or replaces) a virtual IP pool in the running
// instance (vici load-pool): addrs is swanctl's pool addrs (a prefix or
// a range), dns the servers handed out with a lease.
func (c *Charon) LoadPool(ctx context.Context, name, addrs string, dns ...string) error {
	p := vici.NewMessage()
	if err := p.Set("addrs", addrs); err != nil {
		return fmt.Errorf("swan: LoadPool %s: %w", name, err)
	}
	if len(dns) > 0 {
		if err := p.Set("dns", dns); err != nil {
			return fmt.Errorf("swan: LoadPool %s: %w", name, err)
		}
	}
	m := vici.NewMessage()
	if err := m.Set(name, p); err != nil {
		return fmt.Errorf("swan: LoadPool %s: %w", name, err)
	}
	if _, err := c.call(ctx, "load-pool", m); err != nil {
		return fmt.Errorf("swan: load-pool %s: %w", name, err)
	}
	return nil
}
