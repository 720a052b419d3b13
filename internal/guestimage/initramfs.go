package guestimage

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
)

// ModulesListPath is where the image tells the agent which modules to
// load: one "boot NAME" or "late NAME" line each.
const ModulesListPath = "etc/guest-modules"

// buildImage writes imgDir/initramfs.cpio: /init, the module tree, the
// module list, and the directories and console node the kernel and the
// agent need before devtmpfs is mounted.
func buildImage(imgDir, tmp string, k kernelDir, agent agentBin) (Image, error) {
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return Image{}, err
	}
	initrd := filepath.Join(imgDir, "initramfs.cpio")
	f, err := os.Create(initrd + ".tmp")
	if err != nil {
		return Image{}, err
	}
	defer os.Remove(initrd + ".tmp")
	bw := bufio.NewWriterSize(f, 1<<20)
	w := cpio.NewDedupWriter(cpio.Newc.Writer(bw))
	modRoot := path.Join("lib/modules", k.Release)
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1), // the kernel opens it for /init's stdio before devtmpfs exists
		cpio.Directory("proc", 0o555),
		cpio.Directory("sys", 0o555),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("mnt", 0o755),
		cpio.StaticFile(ModulesListPath, moduleList(), 0o644),
	}
	agentRec, err := fileRecord(agent.path, "init", 0o755)
	if err != nil {
		return Image{}, err
	}
	recs = append(recs, agentRec)
	for _, name := range append([]string{"modules.dep", "modules.builtin"}, k.Modules...) {
		r, err := fileRecord(filepath.Join(k.Dir, modRoot, name), path.Join(modRoot, filepath.ToSlash(name)), 0o644)
		if err != nil {
			return Image{}, err
		}
		recs = append(recs, r)
	}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return Image{}, fmt.Errorf("guestimage: initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return Image{}, fmt.Errorf("guestimage: initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return Image{}, err
	}
	if err := f.Close(); err != nil {
		return Image{}, err
	}
	if err := os.Rename(initrd+".tmp", initrd); err != nil {
		return Image{}, err
	}
	ki, err := os.Stat(k.Vmlinux)
	if err != nil {
		return Image{}, err
	}
	ii, err := os.Stat(initrd)
	if err != nil {
		return Image{}, err
	}
	var mods []string
	for _, m := range k.Modules {
		mods = append(mods, modName(m))
	}
	return Image{
		Kernel: k.Vmlinux, Initrd: initrd, Append: append([]string(nil), kernelArgs...),
		KernelPackage: k.Pkg.Name, KernelVersion: k.Pkg.Version, KernelRelease: k.Release,
		AgentSHA256: agent.sum, Modules: mods,
		KernelBytes: ki.Size(), InitrdBytes: ii.Size(),
		BuilderVersion: BuilderVersion, Built: time.Now().UTC().Truncate(time.Second),
	}, nil
}

// moduleList is the content of ModulesListPath.
func moduleList() string {
	var b strings.Builder
	for _, m := range bootModules {
		b.WriteString("boot " + m + "\n")
	}
	for _, m := range lateModules {
		b.WriteString("late " + m + "\n")
	}
	return b.String()
}

// fileRecord reads a host file into a cpio record (mtime 0: the archive
// depends only on the contents).
func fileRecord(src, name string, perm uint64) (cpio.Record, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return cpio.Record{}, fmt.Errorf("guestimage: initramfs: %w", err)
	}
	return cpio.StaticRecord(b, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}), nil
}
