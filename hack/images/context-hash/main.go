// context-hash prints one sha256 over the build context a Dockerfile build of
// DIR sees: every file, symlink and directory left after DIR/.dockerignore,
// with its path, type, permission bits and content (or link target). It is the
// content key of the pvshift image in hack/images/build.sh: a file the build
// cannot see (tests, node_modules, a chart template) does not change it, and
// neither does a `touch` (times and owners are left out: COPY gives every file
// to root and buildah's layer cache ignores times too).
//
// The patterns are read and matched by github.com/moby/patternmatcher, the
// matcher Docker and BuildKit use; buildah 1.28 uses the copy of the same code
// in containers/storage/pkg/fileutils. That is why this is Go and not a
// reimplementation: .dockerignore is not .gitignore (`test` there means only
// ./test, `*.log` only top-level logs), and a key that disagrees with the
// builder about one file is a stale image nobody notices.
//
// Usage: context-hash [-list] DIR
//
//	-list  print "type mode sha256 path" for every entry instead of the hash
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func main() {
	list := flag.Bool("list", false, "list the entries instead of printing their hash")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: context-hash [-list] DIR")
		os.Exit(2)
	}
	entries, err := contextEntries(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "context-hash: %v\n", err)
		os.Exit(1)
	}
	if *list {
		for _, e := range entries {
			fmt.Println(e)
		}
		return
	}
	sum := sha256.New()
	for _, e := range entries {
		fmt.Fprintln(sum, e)
	}
	fmt.Println(hex.EncodeToString(sum.Sum(nil)))
}

func readPatterns(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ignorefile.ReadAll(f)
}

// contextEntries walks dir in lexical order (filepath.WalkDir sorts), so the
// list, and with it the hash, does not depend on the directory order on disk.
func contextEntries(dir string) ([]string, error) {
	patterns, err := readPatterns(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s/.dockerignore: %w", dir, err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("parsing %s/.dockerignore: %w", dir, err)
	}
	var entries []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return walkErr
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if excluded {
			// An excluded directory is still walked when a `!pattern` may
			// bring back something under it (charts/pvshift/* with
			// !charts/pvshift/files); node_modules and .git are skipped whole.
			if d.IsDir() && !mayReinclude(pm, rel) {
				return filepath.SkipDir
			}
			return nil
		}
		entry, err := describe(path, d)
		if err != nil {
			return err
		}
		entries = append(entries, entry+" "+rel)
		return nil
	})
	return entries, err
}

// mayReinclude tells whether an exclusion pattern can match below dir: its
// literal part (up to the first wildcard) and dir must be prefixes of one another.
func mayReinclude(pm *patternmatcher.PatternMatcher, dir string) bool {
	for _, p := range pm.Patterns() {
		if !p.Exclusion() {
			continue
		}
		literal := p.String()
		if i := strings.IndexAny(literal, "*?[\\"); i >= 0 {
			literal = literal[:i]
		}
		if strings.HasPrefix(literal, dir+"/") || strings.HasPrefix(dir+"/", literal) {
			return true
		}
	}
	return false
}

func describe(path string, d fs.DirEntry) (string, error) {
	info, err := d.Info()
	if err != nil {
		return "", err
	}
	perm := fmt.Sprintf("%04o", info.Mode().Perm())
	switch {
	case d.IsDir():
		return "dir " + perm + " -", nil
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		return "link " + perm + " " + hashOf(strings.NewReader(target)), nil
	case info.Mode().IsRegular():
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		return "file " + perm + " " + hashOf(f), nil
	default:
		// Sockets, pipes and devices have no content a build could copy.
		return "other " + perm + " -", nil
	}
}

func hashOf(r io.Reader) string {
	sum := sha256.New()
	if _, err := io.Copy(sum, r); err != nil {
		return "unreadable:" + err.Error()
	}
	return hex.EncodeToString(sum.Sum(nil))
}
