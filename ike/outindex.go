package ike

// outIndex is an IKE SA's installed children by the peer's SPI (their
// outbound one). Most IKE SAs have one child or a few: up to
// outIndexSmall they are a short list (16 bytes each) searched in
// order, beyond that a map — a map for one child cost ≈190 bytes.
type outIndex struct {
	few  []outEntry
	many map[uint32]*childSA
}

type outEntry struct {
	spi uint32
	ch  *childSA
}

const outIndexSmall = 8

func (x *outIndex) get(spi uint32) *childSA {
	if x.many != nil {
		return x.many[spi]
	}
	for _, o := range x.few {
		if o.spi == spi {
			return o.ch
		}
	}
	return nil
}

func (x *outIndex) put(spi uint32, ch *childSA) {
	if x.many != nil {
		x.many[spi] = ch
		return
	}
	for i := range x.few {
		if x.few[i].spi == spi {
			x.few[i].ch = ch
			return
		}
	}
	if len(x.few) < outIndexSmall {
		x.few = append(x.few, outEntry{spi, ch})
		return
	}
	x.many = make(map[uint32]*childSA, len(x.few)+1)
	for _, o := range x.few {
		x.many[o.spi] = o.ch
	}
	x.many[spi] = ch
	x.few = nil
}

func (x *outIndex) del(spi uint32) {
	if x.many != nil {
		delete(x.many, spi)
		return
	}
	for i := range x.few {
		if x.few[i].spi == spi {
			x.few = append(x.few[:i], x.few[i+1:]...)
			if len(x.few) == 0 {
				x.few = nil
			}
			return
		}
	}
}
