package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "ike", summary: "the daemon's IKE SAs ('ike list')", subs: []*command{{
		name: "list", summary: "list the daemon's IKE SAs with their children",
		help: "One line per IKE SA: its unique ID (for terminate/rekey --ike-id), connection, state, role, SPIs, endpoints, suite, NAT, number of children.\n" +
			"With -json an array of objects (their children inside), with --stream one per line.\n" +
			"The daemon streams the list in batches; --limit N lists the first N IKE SAs, --after ID those after that ID (in the order of their IDs, oldest first).\n" +
			sinceHelp,
		run: runIKEList,
	}}})
}

func runIKEList(ctx context.Context, e *env, args []string) error {
	return runStreamList(ctx, e, "ike-list", args, func(r *control.Response) []any {
		out := make([]any, 0, len(r.IKESAs))
		for _, sa := range r.IKESAs {
			out = append(out, ikeOf(sa))
		}
		return out
	}, newIKETable)
}

// sinceHelp is what ike list and child list say of -since.
const sinceHelp = "--since CURSOR lists only what changed after CURSOR, as the last such listing returned it (0: everything), and what was deleted since;\n" +
	"with -json one object: the entries (\"ike_sas\" or \"children\"), \"deleted\" (their IDs) and \"cursor\", the cursor for the next listing.\n" +
	"An IKE SA is listed when anything shown of it or of its children changed (a child: of its IKE SA or its siblings); counters are not a change.\n" +
	"A listing of changes reads no counters unless --counters is given (one bulk read of the dataplane, as a full listing makes);\n" +
	"without it the children show - (JSON: counters_omitted). A cursor the daemon can no longer answer for (its journal of deletions\n" +
	"has moved past it, or another run of the daemon gave it) fails with code cursor_expired: list again with --since 0."

// rowTable is a listing's table: a header, the rows of each batch of the
// daemon's answer as it comes, and the count at the end.
type rowTable struct {
	w    io.Writer
	tw   *tabwriter.Writer
	n    int
	noun string
	rows func(tw io.Writer, r *control.Response) int // writes r's rows, says how many
}

func newRowTable(w io.Writer, header, noun string, rows func(io.Writer, *control.Response) int) *rowTable {
	t := &rowTable{w: w, tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0), noun: noun, rows: rows}
	fmt.Fprintln(t.tw, header)
	return t
}

func (t *rowTable) add(r *control.Response) { t.n += t.rows(t.tw, r) }

func (t *rowTable) end() {
	t.tw.Flush()
	fmt.Fprintf(t.w, "%d %s\n", t.n, t.noun)
}

// runStreamList runs ike list or child list: the daemon streams the
// listing in batches (control.Client.List), shown as a table or, with
// -json, as a list of the views of each batch's entries. --after and
// --limit page it; --since lists what changed (runChanges).
func runStreamList(ctx context.Context, e *env, cmd string, args []string,
	views func(*control.Response) []any, table func(io.Writer) *rowTable) error {
	fs := newFlags(e, e.path)
	lf := addListFlags(e, fs)
	var after, limit uint64
	var since string
	var counters bool
	fs.Uint64Var(&after, "after", 0, "list only the IKE SAs whose ID is larger (the next page after the last ID shown)")
	fs.Uint64Var(&limit, "limit", 0, "list at most this many IKE SAs (0: all)")
	fs.StringVar(&since, "since", "", "list only what changed after this cursor (0: everything), with what was deleted and the next cursor")
	fs.BoolVar(&counters, "counters", false, "with --since: read the children's counters too")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	if after > math.MaxUint32 || limit > math.MaxUint32 {
		return usageError{fmt.Sprintf("--after and --limit take a number up to %d", uint32(math.MaxUint32))}
	}
	req := control.Request{Cmd: cmd, Args: map[string]string{}}
	if after > 0 {
		req.Args[control.ArgAfter] = strconv.FormatUint(after, 10)
	}
	if limit > 0 {
		req.Args[control.ArgLimit] = strconv.FormatUint(limit, 10)
	}
	if since != "" || counters {
		switch _, err := ike.ParseCursor(since); {
		case since == "":
			return usageError{"--counters goes with --since (a full listing always reads them)"}
		case err != nil:
			return usageError{fmt.Sprintf("--since: %v", err)}
		case after > 0 || limit > 0:
			return usageError{"--since lists what changed, not a page: no --after or --limit"}
		case lf.stream:
			return usageError{"--since prints one JSON object (entries, deleted, cursor): no --stream"}
		}
		req.Args[control.ArgSince] = since
		if counters {
			req.Args[control.ArgCounters] = "1"
		}
		return runChanges(ctx, e, lf, req, views, table)
	}
	if lf.json {
		l := &jsonList{w: e.stdout, stream: lf.stream}
		err := lf.client().List(ctx, req, func(r *control.Response) error {
			for _, v := range views(r) {
				if err := l.add(v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && l.n == 0 {
			return err // a failure writes nothing to stdout
		}
		// A failure midway closes the list it began.
		if eerr := l.end(); err == nil {
			err = eerr
		}
		return err
	}
	t := table(e.stdout)
	if err := lf.client().List(ctx, req, func(r *control.Response) error { t.add(r); return nil }); err != nil {
		return err
	}
	t.end()
	return nil
}

// runCtlList runs a list command: one control request, shown as a table
// or, with -json, as a list of what each puts.
func runCtlList(ctx context.Context, e *env, cmd string, args []string,
	each func(*control.Response, *jsonList) error, table func(*control.Response, io.Writer)) error {
	fs := newFlags(e, e.path)
	lf := addListFlags(e, fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	r, err := lf.client().Do(ctx, control.Request{Cmd: cmd})
	if err != nil {
		return err
	}
	if lf.json {
		l := &jsonList{w: e.stdout, stream: lf.stream}
		err := each(r, l)
		if eerr := l.end(); err == nil {
			err = eerr
		}
		return err
	}
	table(r, e.stdout)
	return nil
}

// newIKETable is ike list's table.
func newIKETable(w io.Writer) *rowTable {
	return newRowTable(w, "ID\tNAME\tSTATE\tROLE\tSPI_I\tSPI_R\tLOCAL\tREMOTE\tSUITE\tNAT\tCHILDREN", "IKE SAs",
		func(tw io.Writer, r *control.Response) int {
			for _, x := range r.IKESAs {
				sa := ikeOf(x)
				nat := "-"
				switch {
				case sa.NATLocal && sa.NATRemote:
					nat = "both"
				case sa.NATLocal:
					nat = "local"
				case sa.NATRemote:
					nat = "remote"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", sa.IKEID, sa.Name, sa.State, sa.Role, sa.SPIi, sa.SPIr,
					sa.Local, sa.Remote, sa.Suite, nat, len(sa.Children))
			}
			return len(r.IKESAs)
		})
}

func printIKESAs(w io.Writer, r *control.Response) {
	t := newIKETable(w)
	t.add(r)
	t.end()
}
