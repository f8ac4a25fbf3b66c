// Package ha is keyplane's high availability: an active/standby pair that
// shares its IKE and child SA state through etcd.
//
// Leadership comes from etcd's lease-based election (the concurrency
// package; no consensus of keyplane's own): [Elector]. The active node's
// [Store] writes each SA record sealed with AES-256-GCM under the
// cluster key ([Sealer]; the key path is authenticated, so a record moved
// to another key does not open), each write guarded by the leader's
// election key in the same etcd transaction. A standby's [Mirror] watches
// and holds the latest records in memory, bounded in size and count.
// [Fenced] wraps a dataplane handle so that no SAD or SPD write happens
// while this node does not hold the lease.
package ha
