package kernelops

import (
	"context"
	"fmt"
)

// OpKind is a batched operation.
type OpKind uint8

const (
	OpAddSA         OpKind = iota + 1 // add SA
	OpUpdateSA                        // update SA
	OpDeleteSA                        // delete SA
	OpAddPolicy                       // add policy
	OpReplacePolicy                   // replace policy
	OpDeletePolicy                    // delete policy
)

// Op is one operation of a batch. Set the field its Kind uses; Err holds
// the result after Apply.
type Op struct {
	Kind     OpKind
	SA       *SA      // OpAddSA, OpUpdateSA
	SAID     SAID     // OpDeleteSA
	Policy   *Policy  // OpAddPolicy, OpReplacePolicy
	PolicyID PolicyID // OpDeletePolicy
	Err      error
}

// BatchError reports how many operations of a batch failed.
type BatchError struct {
	Failed int
	Total  int
	First  error // the first failure, in op order
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("batch: %d of %d operations failed; first: %v", e.Failed, e.Total, e.First)
}

func (e *BatchError) Unwrap() error { return e.First }

// Apply runs ops on b: through its Batcher when it offers one (As), else
// one call at a time on its SAD and SPD. Each op's Err is set.
func Apply(ctx context.Context, b Backend, ops []Op) error {
	if bt, err := As[Batcher](b); err == nil {
		return bt.Apply(ctx, ops)
	}
	sad, _ := As[SAD](b)
	spd, _ := As[SPD](b)
	for i := range ops {
		op := &ops[i]
		if err := ctx.Err(); err != nil {
			op.Err = err
			continue
		}
		op.Err = applyOne(ctx, b.Name(), sad, spd, op)
	}
	return BatchResult(ops)
}

func applyOne(ctx context.Context, name string, sad SAD, spd SPD, op *Op) error {
	switch op.Kind {
	case OpAddSA, OpUpdateSA, OpDeleteSA:
		if sad == nil {
			return NotSupported(name, op.Kind.String(), "backend has no SAD")
		}
	case OpAddPolicy, OpReplacePolicy, OpDeletePolicy:
		if spd == nil {
			return NotSupported(name, op.Kind.String(), "backend has no SPD")
		}
	}
	switch op.Kind {
	case OpAddSA:
		return sad.AddSA(ctx, op.SA)
	case OpUpdateSA:
		return sad.UpdateSA(ctx, op.SA)
	case OpDeleteSA:
		return sad.DeleteSA(ctx, op.SAID)
	case OpAddPolicy:
		return spd.AddPolicy(ctx, op.Policy)
	case OpReplacePolicy:
		return spd.ReplacePolicy(ctx, op.Policy)
	case OpDeletePolicy:
		return spd.DeletePolicy(ctx, op.PolicyID)
	}
	return Invalid(name, "batch", "", "Kind", "unknown operation %d", op.Kind)
}

// BatchResult summarises ops' errors into a *BatchError, or nil.
func BatchResult(ops []Op) error {
	var be *BatchError
	for i := range ops {
		if ops[i].Err != nil {
			if be == nil {
				be = &BatchError{Total: len(ops), First: ops[i].Err}
			}
			be.Failed++
		}
	}
	if be == nil {
		return nil
	}
	return be
}
