package guestimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestParseDepends(t *testing.T) {
	show := []byte("Package: linux-image-amd64\nVersion: 6.1.192-3\nDepends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\nDescription: Linux for 64-bit PCs (meta-package)\n")
	k, ok := parseDepends(show)
	if want := (kernelPkg{"linux-image-6.1.0-57-amd64", "6.1.192-3"}); !ok || k != want {
		t.Errorf("unexpected package (-want +got):\n%s", cmp.Diff(want, k))
	}
	if _, ok := parseDepends([]byte("Package: x\nDepends: libc6 (>= 2)\n")); ok {
		t.Error("parseDepends took a dependency that is no kernel")
	}
}

func TestParseModinfo(t *testing.T) {
	b := []byte("license=GPL\x00depends=snd-hda-core,snd\x00softdep=pre: crc32c post: foo\x00name=snd_hda_intel\x00\x00")
	want := modinfo{Name: "snd_hda_intel", Depends: []string{"snd-hda-core", "snd"}, Pre: []string{"crc32c"}}
	if diff := cmp.Diff(want, parseModinfo(b)); diff != "" {
		t.Errorf("unexpected modinfo (-want +got):\n%s", diff)
	}
}

func TestClosure(t *testing.T) {
	idx := map[string]string{
		"a": "kernel/a.ko", "b_c": "kernel/b-c.ko", "d": "kernel/d.ko", "unused": "kernel/unused.ko",
	}
	infos := map[string]modinfo{
		"kernel/a.ko":   {Depends: []string{"b-c"}, Pre: []string{"d", "builtin-thing"}},
		"kernel/b-c.ko": {Depends: []string{"d"}},
		"kernel/d.ko":   {},
	}
	deps, err := closureWith(idx, []string{"a"}, func(rel string) (modinfo, error) { return infos[rel], nil })
	if err != nil {
		t.Fatal(err)
	}
	want := "kernel/a.ko: kernel/b-c.ko kernel/d.ko\nkernel/b-c.ko: kernel/d.ko\nkernel/d.ko:\n"
	if diff := cmp.Diff(want, string(modulesDep(deps))); diff != "" {
		t.Errorf("unexpected modules.dep (-want +got):\n%s", diff)
	}
	_, err = closureWith(idx, []string{"missing"}, func(string) (modinfo, error) { return modinfo{}, nil })
	if err == nil || !strings.Contains(err.Error(), "missing is not in the kernel package") {
		t.Errorf("unexpected error %v for a module the package lacks", err)
	}
}

func TestStripSignature(t *testing.T) {
	mod := []byte("\x7fELF module body")
	sig := bytes.Repeat([]byte{0xaa}, 300)
	info := make([]byte, 12)
	binary.BigEndian.PutUint32(info[8:], uint32(len(sig)))
	signed := append(append(append(append([]byte{}, mod...), sig...), info...), sigMarker...)
	if got := stripSignature(signed); !bytes.Equal(got, mod) {
		t.Errorf("stripSignature left %d bytes, want the %d of the module", len(got), len(mod))
	}
	if got := stripSignature(mod); !bytes.Equal(got, mod) {
		t.Error("stripSignature changed an unsigned module")
	}
}

func TestBzPayload(t *testing.T) {
	bz := make([]byte, 4096)
	copy(bz[offHeaderMagic:], "HdrS")
	bz[offSetupSects] = 2 // payload offsets count from (2+1)*512
	binary.LittleEndian.PutUint32(bz[offPayloadOffset:], 100)
	binary.LittleEndian.PutUint32(bz[offPayloadLength:], 6)
	copy(bz[3*512+100:], xzMagic)
	p, err := bzPayload(bz)
	if err != nil || !bytes.Equal(p, xzMagic) {
		t.Errorf("bzPayload = % x, %v; want the xz magic", p, err)
	}
	if _, err := bzPayload(make([]byte, 4096)); err == nil {
		t.Error("bzPayload took a file with no setup header")
	}
}

func TestHasNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b bytes.Buffer
		n := append([]byte(name), 0)
		binary.Write(&b, binary.LittleEndian, [3]uint32{uint32(len(n)), uint32(len(desc)), typ})
		b.Write(n)
		b.Write(make([]byte, (4-len(n)%4)%4))
		b.Write(desc)
		b.Write(make([]byte, (4-len(desc)%4)%4))
		return b.Bytes()
	}
	notes := append(note("GNU", 3, []byte{1, 2, 3}), note("Xen", xenElfnotePhys32Entry, []byte{0, 0, 0, 1})...)
	if !hasNote(notes, "Xen", xenElfnotePhys32Entry) {
		t.Error("hasNote missed the PVH note")
	}
	if hasNote(notes[:len(notes)-8], "Xen", xenElfnotePhys32Entry) || hasNote(notes, "Linux", xenElfnotePhys32Entry) {
		t.Error("hasNote found a note that is not there")
	}
}

func TestImageKey(t *testing.T) {
	k := kernelPkg{"linux-image-6.1.0-57-amd64", "6.1.192-3"}
	a := imageKey(k, "aaaa")
	if a != imageKey(k, "aaaa") {
		t.Fatal("imageKey is not deterministic")
	}
	if a == imageKey(k, "bbbb") || a == imageKey(kernelPkg{k.Name, "6.1.193-1"}, "aaaa") {
		t.Error("imageKey ignores the agent or the kernel version")
	}
}

func TestFindWithoutImage(t *testing.T) {
	_, err := Find(t.TempDir())
	if !errors.Is(err, ErrNoImage) || !strings.Contains(err.Error(), "make guest") {
		t.Errorf("unexpected error %v, want ErrNoImage naming make guest", err)
	}
}

// TestBuildImage writes an initramfs from a fake kernel dir and reads it
// back with u-root's reader.
func TestBuildImage(t *testing.T) {
	dir := t.TempDir()
	kd := kernelDir{Dir: filepath.Join(dir, "kernel"), Pkg: kernelPkg{"linux-image-x", "1"}, Release: "6.1.0-x", Vmlinux: filepath.Join(dir, "vmlinux"),
		Modules: []string{"kernel/drivers/a.ko"}}
	modRoot := filepath.Join(kd.Dir, "lib/modules/6.1.0-x")
	for name, content := range map[string]string{
		"kernel/drivers/a.ko": "module a", "modules.dep": "kernel/drivers/a.ko:\n", "modules.builtin": "kernel/b.ko\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(modRoot, name)), 0o755)
		os.WriteFile(filepath.Join(modRoot, name), []byte(content), 0o644)
	}
	os.WriteFile(kd.Vmlinux, []byte("elf"), 0o644)
	agent := filepath.Join(dir, "init")
	os.WriteFile(agent, []byte("agent binary"), 0o755)
	img, err := buildImage(filepath.Join(dir, "image"), dir, kd, agentBin{path: agent, sum: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rr := cpio.Newc.Reader(f)
	got := map[string]string{}
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Name == cpio.Trailer {
			break
		}
		b := make([]byte, rec.FileSize)
		if rec.ReaderAt != nil {
			rec.ReadAt(b, 0)
		}
		switch rec.Mode & cpio.S_IFMT {
		case cpio.S_IFCHR:
			got[rec.Name] = "chr"
		case cpio.S_IFDIR:
			got[rec.Name] = "dir"
		default:
			got[rec.Name] = string(b)
		}
	}
	for name, want := range map[string]string{
		"init": "agent binary", "dev/console": "chr", "proc": "dir", "sys": "dir",
		"lib/modules/6.1.0-x/kernel/drivers/a.ko": "module a",
		"lib/modules/6.1.0-x/modules.dep":         "kernel/drivers/a.ko:\n",
		ModulesListPath:                           moduleList(),
	} {
		if got[name] != want {
			t.Errorf("initramfs %s = %q, want %q", name, got[name], want)
		}
	}
	if img.KernelRelease != "6.1.0-x" || img.AgentSHA256 != "abc" || len(img.Append) == 0 {
		t.Errorf("unexpected manifest %+v", img)
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, age int) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(p, 0o755)
		ts := time.Now().Add(-time.Duration(age) * time.Hour)
		os.Chtimes(p, ts, ts)
		return p
	}
	for i := range 5 {
		mk("image-"+strconv.Itoa(i), i)
	}
	oldKernel := mk("kernel-1-aa", 10)
	os.WriteFile(filepath.Join(oldKernel, "package"), []byte("linux-image-x 1\n"), 0o644)
	k2 := mk("kernel-2-aa", 1)
	os.WriteFile(filepath.Join(k2, "package"), []byte("linux-image-x 2\n"), 0o644)
	k3 := mk("kernel-3-aa", 0)
	os.WriteFile(filepath.Join(k3, "package"), []byte("linux-image-x 3\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "debs"), 0o755)
	for _, v := range []string{"1", "3"} {
		os.WriteFile(filepath.Join(dir, "debs", "linux-image-x_"+v+"_amd64.deb"), nil, 0o644)
	}
	prune(dir, filepath.Join(dir, "image-4"))
	var left []string
	ms, _ := filepath.Glob(filepath.Join(dir, "*", "*.deb"))
	all, _ := filepath.Glob(filepath.Join(dir, "*-*"))
	for _, m := range append(all, ms...) {
		rel, _ := filepath.Rel(dir, m)
		left = append(left, rel)
	}
	want := []string{"image-0", "image-1", "image-2", "image-4", "kernel-2-aa", "kernel-3-aa", "debs/linux-image-x_3_amd64.deb"}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("unexpected cache after prune (-want +got):\n%s", diff)
	}
}
