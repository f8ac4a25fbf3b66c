package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "certs", summary: "the daemon's certificates and CRLs ('certs list')", subs: []*command{{
		name: "list", summary: "list the daemon's certificates and CRLs and the connections using them",
		help: `One line per certificate or CRL of the running configuration (after the last reload; a
reload re-reads the files): its kind (local: one of local.certs with its private key,
intermediate: one of local.certs without, ca: one of remote.cacerts, crl: one of
remote.crls), subject, issuer, validity (a CRL's this and next update), file and the
connections that use it.
With -json an array of objects, with --stream one per line.`,
		run: runCertsList,
	}}})
}

func runCertsList(ctx context.Context, e *env, args []string) error {
	return runCtlList(ctx, e, "certs-list", args, func(r *control.Response, l *jsonList) error {
		for _, c := range r.Certs {
			if err := l.add(c); err != nil {
				return err
			}
		}
		return nil
	}, func(r *control.Response, w io.Writer) { printCerts(w, r.Certs) })
}

func printCerts(w io.Writer, cs []ike.CertInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSUBJECT\tISSUER\tNOT BEFORE\tNOT AFTER\tFILE\tCONNECTIONS")
	day := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04")
	}
	for _, c := range cs {
		subject := c.Subject
		if c.Kind == "crl" {
			subject = fmt.Sprintf("CRL (%d revoked)", c.Revoked)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Kind, subject, c.Issuer, day(c.NotBefore), day(c.NotAfter), c.File,
			strings.Join(c.Connections, ","))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d certificates and CRLs\n", len(cs))
}
