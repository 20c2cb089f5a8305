// Command go-note opens signed notes with Go's reference implementation,
// golang.org/x/mod/sumdb/note.Open, so tests/test_notes.py can check that the
// ledger's note opener (ledger/notes.py open_note) accepts and rejects exactly
// what Go does.
//
// Usage:
//
//	go-note -vkey <name+hash+key> [-vkey ...] <note file>...
//
// For each note file it prints one line: "OK <names of the verified signers>"
// or "ERR <note.Open's error>". The exit status is 0 unless a file cannot be read.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type vkeys []string

func (v *vkeys) String() string     { return strings.Join(*v, ",") }
func (v *vkeys) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	var keys vkeys
	flag.Var(&keys, "vkey", "a trusted verifier key (repeat)")
	flag.Parse()
	var verifiers []note.Verifier
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vkey:", err)
			os.Exit(2)
		}
		verifiers = append(verifiers, v)
	}
	for _, name := range flag.Args() {
		msg, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		n, err := note.Open(msg, note.VerifierList(verifiers...))
		if err != nil {
			fmt.Println("ERR", err)
			continue
		}
		var names []string
		for _, s := range n.Sigs {
			names = append(names, s.Name)
		}
		fmt.Println("OK", strings.Join(names, " "))
	}
}
