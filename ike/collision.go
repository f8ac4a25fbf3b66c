package ike

import "bytes"

// Rekey collisions (RFC 7296 §2.8.1 for children, §2.8.2 for IKE SAs):
// both ends rekey the same SA at once, each answers the other's request
// as usual, and there are two new SAs where one is wanted. The SA made by
// the exchange that carried the lowest of the four nonces is redundant
// and the end that initiated that exchange deletes it; the end that
// initiated the other exchange deletes the old SA, as after any rekey.
// Both ends compare the same four nonces, so they agree without another
// word.

// ourExchangeLoses reports whether our exchange (nonces ourNi, ourNr)
// carried the lowest of the four nonces, so that the SA it made is the
// redundant one. Nonces compare octet by octet, a nonce that is a prefix
// of another being the lower (RFC 7296 §2.8.1) — bytes.Compare.
func ourExchangeLoses(ourNi, ourNr, theirNi, theirNr []byte) bool {
	ours, theirs := lowest(ourNi, ourNr), lowest(theirNi, theirNr)
	if c := bytes.Compare(ours, theirs); c != 0 {
		return c < 0
	}
	// Equal lowest nonces cannot happen between honest ends (32 random
	// octets each); compare the others so both ends still agree.
	return bytes.Compare(highest(ourNi, ourNr), highest(theirNi, theirNr)) < 0
}

func lowest(a, b []byte) []byte {
	if bytes.Compare(a, b) <= 0 {
		return a
	}
	return b
}

func highest(a, b []byte) []byte {
	if bytes.Compare(a, b) > 0 {
		return a
	}
	return b
}

// settleChildRekey runs when our rekey of old has been answered and its
// new child installed. Without a collision old goes (we started the
// rekey). With one — the peer rekeyed old too and we answered — the
// nonces say which new child is redundant.
func (sa *ikeSA) settleChildRekey(old *childSA) {
	ours, theirs := old.ours, old.theirs
	if theirs == nil || theirs.nc.state != childInstalled {
		sa.deleteChild(old, "rekeyed")
		return
	}
	if ourExchangeLoses(ours.ni, ours.nr, theirs.ni, theirs.nr) {
		old.logger().Info("child rekey collision lost (our exchange has the lowest nonce): deleting our redundant child; the peer deletes the old one",
			"redundant-spi-in", spiHex(ours.nc.inSPI), "surviving-spi-in", spiHex(theirs.nc.inSPI))
		sa.deleteChild(ours.nc, "redundant: child rekey collision lost")
		sa.awaitChildDelete(old, "rekeyed; the peer did not delete the old child")
		return
	}
	old.logger().Info("child rekey collision won (the peer's exchange has the lowest nonce): deleting the old child; the peer deletes its redundant one",
		"redundant-spi-in", spiHex(theirs.nc.inSPI), "surviving-spi-in", spiHex(ours.nc.inSPI))
	sa.deleteChild(old, "rekeyed")
	sa.awaitChildDelete(theirs.nc, "redundant after a child rekey collision; the peer did not delete it")
}

// awaitChildDelete: the peer deletes ch; if it has not within
// oldSAGrace, we do.
func (sa *ikeSA) awaitChildDelete(ch *childSA, why string) {
	sa.e.after(oldSAGrace, func() {
		if ch.state == childInstalled && ch.ike != nil {
			ch.logger().Warn("deleting the child ourselves", "reason", why)
			ch.ike.deleteChild(ch, why)
		}
	})
}

// settleIKERekey runs when our IKE rekey (rk) has been answered, its new
// SA nsa built, and the peer's rekey of the same SA was answered before
// (sa.rekeyIKEIn): the nonces say which new SA is redundant.
func (sa *ikeSA) settleIKERekey(rk *ikeRekey, nsa *ikeSA, nr []byte) {
	in := sa.rekeyIKEIn
	if in.nsa.state == ikeDead || !ourExchangeLoses(rk.ni, nr, in.ni, in.nr) {
		// We won (or the peer's SA is gone already): ours holds the
		// children, we delete the old SA; the peer deletes its
		// redundant one.
		sa.logger().Info("IKE SA rekey collision won (the peer's exchange has the lowest nonce): moving to ours; the peer deletes its redundant SA",
			"ours", nsa.spis(), "redundant", in.nsa.spis())
		sa.handOver(nsa, "rekeyed by us (collision won)")
		sa.endIKERekey(rk, nsa)
		if in.nsa.state != ikeDead {
			in.nsa.pendingOf = nil
			in.nsa.setState(ikeRedundant, "rekey collision lost by the peer; waiting for its delete")
			in.nsa.awaitRedundantDelete()
		}
		sa.startDelete("rekeyed")
		return
	}
	// We lost: the peer's SA holds the children, the peer deletes the
	// old one; ours is redundant and we, its initiator, delete it.
	sa.logger().Info("IKE SA rekey collision lost (our exchange has the lowest nonce): moving to the peer's; deleting our redundant SA",
		"survivor", in.nsa.spis(), "redundant", nsa.spis())
	sa.handOver(in.nsa, "rekeyed by peer (collision won by the peer)")
	sa.endIKERekey(rk, in.nsa)
	sa.adopt(nsa, "redundant after a rekey collision")
	nsa.startDelete("redundant: IKE SA rekey collision lost")
	sa.awaitPeerDelete()
}

// awaitRedundantDelete: the peer deletes this redundant SA; if it has
// not within oldSAGrace, we do.
func (sa *ikeSA) awaitRedundantDelete() {
	sa.rekeyTimer.Stop()
	sa.rekeyTimer = sa.e.after(oldSAGrace, func() {
		sa.rekeyTimer = nil
		if sa.state == ikeRedundant {
			sa.startDelete("redundant after a rekey collision; the peer did not delete it")
		}
	})
}

// settleOnPeerDelete: the peer deletes sa while the collision of our
// rekeys is not settled (our rekey's answer is still out): the peer's
// new SA won, so it takes the children before sa goes (§2.25.2: forget
// our own rekey).
func (sa *ikeSA) settleOnPeerDelete() {
	in := sa.rekeyIKEIn
	if in == nil || in.nsa.state == ikeDead || sa.state == ikeRekeyed {
		return
	}
	sa.logger().Info("peer deletes the IKE SA during our rekey collision: its new SA takes the children", "survivor", in.nsa.spis())
	sa.handOver(in.nsa, "rekeyed by peer (collision; deleted the old SA)")
	if rk := sa.rekeyIKEOut; rk != nil {
		sa.endIKERekey(rk, in.nsa)
	}
}
