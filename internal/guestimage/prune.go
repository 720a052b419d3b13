package guestimage

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Cache retention: images are ~13 MB and each agent change makes one;
// kernel dirs are ~70 MB. The newest few stay, so VMs starting from an
// image another test binary just replaced still find their files.
const (
	keepImages  = 3
	keepKernels = 2
)

// prune removes all but the newest keepImages images and keepKernels
// kernel dirs (never keep, the ones just used), and the .deb files of
// kernel versions no kept dir has. Errors are ignored: pruning is
// housekeeping, and the next Ensure tries again.
func prune(dir string, keep ...string) {
	pruneGlob(filepath.Join(dir, "image-*"), keepImages, keep)
	kernels := pruneGlob(filepath.Join(dir, "kernel-*"), keepKernels, keep)
	debs, _ := filepath.Glob(filepath.Join(dir, "debs", "*.deb"))
	for _, d := range debs {
		used := false
		for _, k := range kernels {
			b, _ := os.ReadFile(filepath.Join(k, "package"))
			name, ver, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
			if name != "" && strings.HasPrefix(filepath.Base(d), name+"_"+strings.ReplaceAll(ver, ":", "%3a")+"_") {
				used = true
			}
		}
		if !used {
			os.Remove(d)
		}
	}
}

// pruneGlob keeps the n newest matches (and those in keep) and returns
// what it kept.
func pruneGlob(pattern string, n int, keep []string) []string {
	ms, _ := filepath.Glob(pattern)
	type entry struct {
		path string
		mod  int64
	}
	var es []entry
	for _, m := range ms {
		if strings.HasSuffix(m, ".new") {
			continue // another build's staging dir
		}
		fi, err := os.Stat(m)
		if err != nil || !fi.IsDir() {
			continue
		}
		es = append(es, entry{m, fi.ModTime().UnixNano()})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].mod > es[j].mod })
	var kept []string
	for i, e := range es {
		pinned := false
		for _, k := range keep {
			pinned = pinned || k == e.path
		}
		if i < n || pinned {
			kept = append(kept, e.path)
			continue
		}
		os.RemoveAll(e.path)
	}
	return kept
}
