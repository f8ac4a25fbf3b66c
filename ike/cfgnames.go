package ike

import "github.com/keyplane/keyplane/ike/config"

// cfgNames indexes the running configuration's connections and children
// by name: config.Config's lookups scan every connection, and an
// Initiate per tunnel with 100,000 connections made a bring-up quadratic
// (the loop spent minutes in them). Rebuilt whenever e.cfg is another
// Config (apply, Reload); a Config is not changed once running.
// Loop-owned.
type cfgNames struct {
	cfg   *config.Config
	conns map[string]*config.Connection
	kids  map[string]cfgChild
}

type cfgChild struct {
	conn *config.Connection
	ch   *config.Child
}

// names is the index of e.cfg.
func (e *Engine) names() *cfgNames {
	n := &e.cfgNames
	if n.cfg == e.cfg && n.conns != nil {
		return n
	}
	*n = cfgNames{cfg: e.cfg, conns: map[string]*config.Connection{}, kids: map[string]cfgChild{}}
	if e.cfg == nil {
		return n
	}
	for _, c := range e.cfg.Connections {
		if _, ok := n.conns[c.Name]; !ok { // the first, as Config.Connection finds it
			n.conns[c.Name] = c
		}
		for _, ch := range c.Children {
			if _, ok := n.kids[ch.Name]; !ok {
				n.kids[ch.Name] = cfgChild{c, ch}
			}
		}
	}
	return n
}

// connection is e.cfg.Connection(name), by the index (a name it does
// not hold is looked for the slow way, as before).
func (e *Engine) connection(name string) *config.Connection {
	if c := e.names().conns[name]; c != nil {
		return c
	}
	return e.cfg.Connection(name)
}

// child is e.cfg.Child(name), by the index (as connection).
func (e *Engine) child(name string) (*config.Connection, *config.Child) {
	if k, ok := e.names().kids[name]; ok {
		return k.conn, k.ch
	}
	return e.cfg.Child(name)
}
