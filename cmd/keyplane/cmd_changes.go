package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/control"
)

// runChanges runs ike list or child list --since: the entries added or
// changed, as a table or, with -json, one object written as the
// daemon's batches come:
//
//	{"ike_sas": [...], "deleted": [{"ike_id": 5}], "cursor": "9f2c01ab.1234"}
//
// (child list: "children", and deleted children as {"ike_id", "child_id"}).
// The deleted entries are held until the entries are written; the daemon
// sends at most its journal's worth (ike.ChangeOptions).
func runChanges(ctx context.Context, e *env, lf *listFlags, req control.Request,
	views func(*control.Response) []any, table func(io.Writer) *rowTable) error {
	key := "ike_sas"
	if req.Cmd == "child-list" {
		key = "children"
	}
	var deleted []ike.Deleted
	var next ike.Cursor
	if lf.json {
		n := 0
		err := lf.client().List(ctx, req, func(r *control.Response) error {
			for _, v := range views(r) {
				b, err := json.MarshalIndent(v, "    ", "  ")
				if err != nil {
					return err
				}
				sep := ",\n    "
				if n == 0 {
					sep = "{\n  \"" + key + "\": [\n    "
				}
				n++
				if _, err := fmt.Fprintf(e.stdout, "%s%s", sep, b); err != nil {
					return err
				}
			}
			deleted = append(deleted, r.Deleted...)
			if !r.Cursor.IsZero() {
				next = r.Cursor
			}
			return nil
		})
		if err != nil && n == 0 {
			return err // a failure writes nothing to stdout
		}
		if n == 0 {
			fmt.Fprintf(e.stdout, "{\n  %q: [", key)
		} else {
			fmt.Fprint(e.stdout, "\n  ")
		}
		if deleted == nil {
			deleted = []ike.Deleted{}
		}
		d, _ := json.Marshal(deleted) // plain numbers: always marshals
		// A failure midway closes the object it began, without a cursor.
		tail := fmt.Sprintf("],\n  \"deleted\": %s", d)
		if err == nil {
			tail += fmt.Sprintf(",\n  \"cursor\": %q", next)
		}
		if _, werr := fmt.Fprintf(e.stdout, "%s\n}\n", tail); err == nil {
			err = werr
		}
		return err
	}
	t := table(e.stdout)
	err := lf.client().List(ctx, req, func(r *control.Response) error {
		t.add(r)
		deleted = append(deleted, r.Deleted...)
		if !r.Cursor.IsZero() {
			next = r.Cursor
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.tw.Flush()
	fmt.Fprintf(e.stdout, "%d %s changed\n", t.n, t.noun)
	for _, d := range deleted {
		if d.ChildID != 0 {
			fmt.Fprintf(e.stdout, "deleted: child SA %d (IKE SA %d)\n", d.ChildID, d.IKEID)
		} else {
			fmt.Fprintf(e.stdout, "deleted: IKE SA %d\n", d.IKEID)
		}
	}
	fmt.Fprintf(e.stdout, "cursor %s\n", next)
	return nil
}
