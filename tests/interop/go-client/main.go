// Command go-client verifies a static C2SP tiled log (checkpoint, hash tiles,
// entry bundles) with nothing but Go's own transparency-log client code,
// golang.org/x/mod/sumdb/tlog and golang.org/x/mod/sumdb/note, and the standard
// library. tests/test_interop_go.py runs it on the pupil ledger's exported log:
// if it says OK, an existing tlog client reads our log unchanged.
//
// Usage:
//
//	go-client -dir <exported log> -vkey <name+hash+key> [-proofs proofs.json] [-samples 32]
//
// Checks, in order (the first failure is printed and the exit status is 1):
//  1. checkpoint: note.Open with note.NewVerifier(vkey); the key name is the
//     checkpoint origin; the body is origin, decimal size, base64 root
//     (c2sp.org/tlog-checkpoint; any extension lines are ignored).
//  2. tree hash: tlog.TreeHash(size, tlog.TileHashReader(tree, tiles)), reading
//     hash tiles from the C2SP paths, equals the checkpoint root.
//  3. every leaf: the level-0 hashes of the whole tree, read by
//     tlog.TileHashReader and authenticated tile by tile with a record proof to the
//     root, equal tlog.RecordHash of each entry in the entry bundles (each entry a
//     big-endian uint16 length and its bytes; a bundle holds exactly its tile's
//     width of entries, nothing more).
//  4. sampled proofs: tlog.ProveRecord from the tiles, checked by tlog.CheckRecord.
//  5. optional -proofs: a JSON array of the ledger's inclusionProof responses
//     ({leaf_index, tree_size, entry, leaf_hash, proof, checkpoint}); each is
//     checked with note.Open and tlog.CheckRecord alone and printed.
//
// sumdb names tiles tile/<H>/<L>/<N>[.p/<W>] and data tiles
// tile/<H>/data/<N>[.p/<W>]; C2SP fixes H = 8 and drops it, and calls data tiles
// entry bundles: tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>]. The index
// encoding (x001/x234/067) is the same, so tilePath rewrites only the prefix.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8 // C2SP tlog-tiles fixes it

// tilePath is the C2SP path of a tile that sumdb's tlog.Tile.Path names.
func tilePath(t tlog.Tile) (string, error) {
	sumdb := t.Path()
	prefix, replacement := fmt.Sprintf("tile/%d/", tileHeight), "tile/"
	if t.L == -1 {
		prefix, replacement = fmt.Sprintf("tile/%d/data/", tileHeight), "tile/entries/"
	}
	if t.H != tileHeight || !strings.HasPrefix(sumdb, prefix) {
		return "", fmt.Errorf("unexpected tile %s (height %d)", sumdb, t.H)
	}
	return replacement + strings.TrimPrefix(sumdb, prefix), nil
}

// dirTiles is a tlog.TileReader over a directory in the C2SP layout.
type dirTiles struct {
	dir  string
	read map[string]bool // every distinct hash tile path read
}

func (d *dirTiles) Height() int { return tileHeight }

func (d *dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p, err := tilePath(t)
		if err != nil {
			return nil, err
		}
		if out[i], err = os.ReadFile(filepath.Join(d.dir, filepath.FromSlash(p))); err != nil {
			return nil, fmt.Errorf("hash tile %s: %v", p, err)
		}
		d.read[p] = true
	}
	return out, nil
}

func (d *dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint verifies a signed note with the one trusted key and parses its body.
func openCheckpoint(msg []byte, verifier note.Verifier) (checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return checkpoint{}, fmt.Errorf("note.Open: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return checkpoint{}, fmt.Errorf("the body is not origin, size and root lines: %q", n.Text)
	}
	c := checkpoint{origin: lines[0]}
	if c.origin != verifier.Name() {
		return checkpoint{}, fmt.Errorf("origin %q is not the key name %q", c.origin, verifier.Name())
	}
	if c.size, err = strconv.ParseInt(lines[1], 10, 64); err != nil || c.size < 0 || strconv.FormatInt(c.size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("bad tree size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return checkpoint{}, fmt.Errorf("bad root hash %q", lines[2])
	}
	copy(c.root[:], root)
	return c, nil
}

// readBundle reads entry bundle k of a tree of size n: exactly its width of entries.
func readBundle(dir string, k, n int64) ([][]byte, string, error) {
	width := n - k<<tileHeight
	if width > 1<<tileHeight {
		width = 1 << tileHeight
	}
	p, err := tilePath(tlog.Tile{H: tileHeight, L: -1, N: k, W: int(width)})
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
	if err != nil {
		return nil, p, fmt.Errorf("entry bundle %s: %v", p, err)
	}
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, p, fmt.Errorf("entry bundle %s: a truncated length prefix after %d entries", p, len(entries))
		}
		size := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+size {
			return nil, p, fmt.Errorf("entry bundle %s: entry %d claims %d bytes, %d remain", p, len(entries), size, len(data)-2)
		}
		entries = append(entries, data[2:2+size])
		data = data[2+size:]
	}
	if int64(len(entries)) != width {
		return nil, p, fmt.Errorf("entry bundle %s holds %d entries, want %d", p, len(entries), width)
	}
	return entries, p, nil
}

// inclusionProof is one response of the ledger's GET /log/proof/inclusion.
type inclusionProof struct {
	LeafIndex  int64    `json:"leaf_index"`
	TreeSize   int64    `json:"tree_size"`
	Entry      string   `json:"entry"`
	LeafHash   string   `json:"leaf_hash"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

// checkServedProof checks one inclusionProof response against its own checkpoint.
func checkServedProof(p inclusionProof, verifier note.Verifier) error {
	c, err := openCheckpoint([]byte(p.Checkpoint), verifier)
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	if c.size != p.TreeSize {
		return fmt.Errorf("tree_size %d but the checkpoint's size is %d", p.TreeSize, c.size)
	}
	entry, err := base64.StdEncoding.DecodeString(p.Entry)
	if err != nil {
		return fmt.Errorf("entry is not base64: %v", err)
	}
	leaf := tlog.RecordHash(entry)
	if p.LeafHash != base64.StdEncoding.EncodeToString(leaf[:]) {
		return fmt.Errorf("leaf_hash %s is not tlog.RecordHash(entry) %s", p.LeafHash, leaf)
	}
	proof := make(tlog.RecordProof, len(p.Proof))
	for i, s := range p.Proof {
		h, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(h) != tlog.HashSize {
			return fmt.Errorf("proof[%d] is not a base64 hash", i)
		}
		copy(proof[i][:], h)
	}
	return tlog.CheckRecord(proof, c.size, c.root, p.LeafIndex, leaf)
}

// sampleIndexes: the edges of the tree and of the first tiles, and an even spread.
func sampleIndexes(n int64, count int) []int64 {
	seen := map[int64]bool{}
	var out []int64
	add := func(i int64) {
		if i >= 0 && i < n && !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	for _, i := range []int64{0, 1, 255, 256, 257, 511, 512, n / 2, n - 2, n - 1} {
		add(i)
	}
	for k := 0; k < count; k++ {
		add(int64(k) * n / int64(count))
	}
	return out
}

func run(dir, vkey, proofsFile string, samples int) (string, error) {
	verifier, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return "", fmt.Errorf("vkey: %v", err)
	}
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		return "", fmt.Errorf("checkpoint: %v", err)
	}
	c, err := openCheckpoint(msg, verifier)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %v", err)
	}
	n := c.size
	if n == 0 {
		return "", fmt.Errorf("checkpoint: the tree is empty; nothing to verify")
	}

	tiles := &dirTiles{dir: dir, read: map[string]bool{}}
	reader := tlog.TileHashReader(tlog.Tree{N: n, Hash: c.root}, tiles)
	root, err := tlog.TreeHash(n, reader)
	if err != nil {
		return "", fmt.Errorf("tree hash from the tiles: %v", err)
	}
	if root != c.root {
		return "", fmt.Errorf("tree hash from the tiles %s is not the checkpoint root %s", root, c.root)
	}

	// Every leaf hash, authenticated against the root by TileHashReader, tile by tile.
	bundles := int64(0)
	for k := int64(0); k<<tileHeight < n; k++ {
		entries, path, err := readBundle(dir, k, n)
		if err != nil {
			return "", err
		}
		indexes := make([]int64, len(entries))
		for j := range entries {
			indexes[j] = tlog.StoredHashIndex(0, k<<tileHeight+int64(j))
		}
		leaves, err := reader.ReadHashes(indexes)
		if err != nil {
			return "", fmt.Errorf("leaf hashes of entries %d-%d: %v", k<<tileHeight, k<<tileHeight+int64(len(entries))-1, err)
		}
		// TileHashReader (x/mod v0.7.0) does not always check a full tile against its parent:
		// its loop "Authenticate full tiles against their parents" starts at len(stx), the
		// number of the tree's subtrees, not at the number of distinct tiles they lie in, so
		// the first tiles fetched after those are skipped. A record proof from the tile's first
		// leaf runs through every other hash of the tile and up through its parents to the
		// signed root, so checking it authenticates the whole tile.
		first := k << tileHeight
		proof, err := tlog.ProveRecord(n, first, reader)
		if err != nil {
			return "", fmt.Errorf("tlog.ProveRecord(%d, %d): %v", n, first, err)
		}
		if err := tlog.CheckRecord(proof, n, c.root, first, leaves[0]); err != nil {
			return "", fmt.Errorf("hash tiles of entries %d-%d do not lead to the checkpoint root: tlog.CheckRecord(record %d): %v",
				first, first+int64(len(entries))-1, first, err)
		}
		for j, e := range entries {
			if tlog.RecordHash(e) != leaves[j] {
				return "", fmt.Errorf("entry %d in %s: tlog.RecordHash(entry) %s is not the leaf hash %s in the hash tiles",
					k<<tileHeight+int64(j), path, tlog.RecordHash(e), leaves[j])
			}
		}
		bundles++
	}

	indexes := sampleIndexes(n, samples)
	for _, i := range indexes {
		proof, err := tlog.ProveRecord(n, i, reader)
		if err != nil {
			return "", fmt.Errorf("tlog.ProveRecord(%d, %d): %v", n, i, err)
		}
		leaf, err := reader.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			return "", fmt.Errorf("leaf %d: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, n, c.root, i, leaf[0]); err != nil {
			return "", fmt.Errorf("tlog.CheckRecord(record %d of %d): %v", i, n, err)
		}
	}

	served := 0
	if proofsFile != "" {
		data, err := os.ReadFile(proofsFile)
		if err != nil {
			return "", fmt.Errorf("proofs: %v", err)
		}
		var proofs []inclusionProof
		if err := json.Unmarshal(data, &proofs); err != nil {
			return "", fmt.Errorf("proofs: %s is not a JSON array of inclusionProof responses: %v", proofsFile, err)
		}
		for i, p := range proofs {
			if err := checkServedProof(p, verifier); err != nil {
				return "", fmt.Errorf("proofs[%d] (leaf %d, tree size %d): %v", i, p.LeafIndex, p.TreeSize, err)
			}
			fmt.Printf("proof leaf %d tree %d: %d hashes, tlog.CheckRecord OK\n", p.LeafIndex, p.TreeSize, len(p.Proof))
			served++
		}
	}

	return fmt.Sprintf("OK origin %s size %d root %s: %d hash tiles, %d entry bundles, %d leaves, %d sampled proofs, %d served proofs",
		c.origin, n, c.root, len(tiles.read), bundles, n, len(indexes), served), nil
}

func main() {
	dir := flag.String("dir", "", "directory holding the exported log: checkpoint and tile/")
	vkey := flag.String("vkey", "", "the log's verifier key, <name>+<hex key id>+<base64 key>")
	proofs := flag.String("proofs", "", "optional JSON file: an array of inclusionProof responses to check")
	samples := flag.Int("samples", 32, "how many evenly spread record proofs to build and check")
	flag.Parse()
	if *dir == "" || *vkey == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: go-client -dir <log directory> -vkey <verifier key> [-proofs file.json] [-samples n]")
		os.Exit(2)
	}
	summary, err := run(*dir, *vkey, *proofs, *samples)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(summary)
}
