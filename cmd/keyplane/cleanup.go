package main

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"

	"github.com/keyplane/keyplane/kernelops"
)

// cleanupOwned removes the SAs and policies this keyplane owns (its reqid
// range; the backends' FlushSAs and FlushPolicies touch nothing else) and
// logs how many went. when is "start" or "stop".
func cleanupOwned(ctx context.Context, b kernelops.Backend, log *slog.Logger, when string) error {
	var removed []any
	if spd, err := kernelops.As[kernelops.SPD](b); err == nil {
		n, err := flushCounted(ctx, spd.Policies, spd.FlushPolicies)
		if err != nil {
			return fmt.Errorf("cleanup at %s: policies: %w", when, err)
		}
		removed = append(removed, "policies", n)
	}
	if sad, err := kernelops.As[kernelops.SAD](b); err == nil {
		n, err := flushCounted(ctx, sad.SAs, sad.FlushSAs)
		if err != nil {
			return fmt.Errorf("cleanup at %s: SAs: %w", when, err)
		}
		removed = append(removed, "sas", n)
	}
	log.Info("cleanup at "+when+": removed keyplane's own dataplane entries", removed...)
	return nil
}

// flushCounted flushes and returns how many entries went (the dump's
// count before minus after; foreign entries stay and cancel out).
func flushCounted[E any](ctx context.Context, dump func(context.Context) iter.Seq2[E, error], flush func(context.Context) error) (int, error) {
	count := func() (int, error) {
		n := 0
		for _, err := range dump(ctx) {
			if err != nil {
				return 0, err
			}
			n++
		}
		return n, nil
	}
	before, err := count()
	if err != nil && !errors.Is(err, kernelops.ErrNotSupported) {
		return 0, err
	}
	if err := flush(ctx); err != nil {
		return 0, err
	}
	after, err := count()
	if err != nil && !errors.Is(err, kernelops.ErrNotSupported) {
		return 0, err
	}
	return max(before-after, 0), nil
}
