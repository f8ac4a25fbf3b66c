package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "ike", summary: "the daemon's IKE SAs ('ike list')", subs: []*command{{
		name: "list", summary: "list the daemon's IKE SAs with their children",
		help: "One line per IKE SA: its unique ID (for terminate/rekey --ike-id), connection, state, role, SPIs, endpoints, suite, NAT, number of children.\n" +
			"With -json an array of objects (their children inside), with --stream one per line.\n" +
			"The daemon streams the list in batches; --limit N lists the first N IKE SAs, --after ID those after that ID (in the order of their IDs, oldest first).",
		run: runIKEList,
	}}})
}

func runIKEList(ctx context.Context, e *env, args []string) error {
	return runStreamList(ctx, e, "ike-list", args, func(r *control.Response, l *jsonList) error {
		for _, sa := range r.IKESAs {
			if err := l.add(ikeOf(sa)); err != nil {
				return err
			}
		}
		return nil
	}, newIKETable)
}

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
// -json, as a list of what each puts. --after and --limit page it.
func runStreamList(ctx context.Context, e *env, cmd string, args []string,
	each func(*control.Response, *jsonList) error, table func(io.Writer) *rowTable) error {
	fs := newFlags(e, e.path)
	lf := addListFlags(e, fs)
	var after, limit uint64
	fs.Uint64Var(&after, "after", 0, "list only the IKE SAs whose ID is larger (the next page after the last ID shown)")
	fs.Uint64Var(&limit, "limit", 0, "list at most this many IKE SAs (0: all)")
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
	if lf.json {
		l := &jsonList{w: e.stdout, stream: lf.stream}
		err := lf.client().List(ctx, req, func(r *control.Response) error { return each(r, l) })
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
