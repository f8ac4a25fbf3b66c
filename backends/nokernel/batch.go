package nokernel

import (
	"context"

	"github.com/keyplane/keyplane/kernelops"
)

// Apply runs a batch (Batcher): each op on its own, in order, its result
// in Err; one failing op does not stop the others. The model has no
// requests in flight to overlap; the facet exists so callers batch the
// same way on every dataplane. The front end has checked every op.
func (b *model) Apply(ctx context.Context, ops []kernelops.Op) error {
	for i := range ops {
		op := &ops[i]
		if err := ctx.Err(); err != nil {
			op.Err = err
			continue
		}
		switch op.Kind {
		case kernelops.OpAddSA:
			op.Err = b.AddSA(ctx, op.SA)
		case kernelops.OpUpdateSA:
			op.Err = b.UpdateSA(ctx, op.SA)
		case kernelops.OpDeleteSA:
			op.Err = b.DeleteSA(ctx, op.SAID)
		case kernelops.OpAddPolicy:
			op.Err = b.AddPolicy(ctx, op.Policy)
		case kernelops.OpReplacePolicy:
			op.Err = b.ReplacePolicy(ctx, op.Policy)
		case kernelops.OpDeletePolicy:
			op.Err = b.DeletePolicy(ctx, op.PolicyID)
		default:
			op.Err = kernelops.Invalid("", "", "", "Kind", "unknown operation %d", op.Kind)
		}
	}
	return kernelops.BatchResult(ops)
}
