package api_test

import (
	"encoding/json"
	"net/url"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

var linkNext = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// pages GETs path and follows its Link rel="next" headers, decoding each
// page into a fresh T, and returns the pages.
func pages[T any](t *testing.T, e *env, path string) []T {
	t.Helper()
	var out []T
	for range 100 {
		r := e.getOK(path)
		var page T
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, r.body)
		}
		out = append(out, page)
		link := r.header.Get("Link")
		if link == "" {
			return out
		}
		m := linkNext.FindStringSubmatch(link)
		if m == nil {
			t.Fatalf("GET %s: unexpected Link header %q", path, link)
		}
		path = m[1]
	}
	t.Fatalf("GET %s: more than 100 pages", path)
	return nil
}

func sessionIDs(pages [][]store.SessionInfo) [][]string {
	out := make([][]string, len(pages))
	for i, p := range pages {
		out[i] = []string{}
		for _, s := range p {
			out[i] = append(out[i], s.ID)
		}
	}
	return out
}

func TestSessionPages(t *testing.T) {
	e := newEnv(t, envOptions{consoles: 1})
	k := static.Key{Source: "lab", UUID: uuidOf(0)}
	var ids []string // newest first
	for i := range 5 {
		m, err := e.store.Mint(k)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := e.store.Terminate(m.SessionID); err != nil {
				t.Fatal(err)
			}
		}
		ids = append([]string{m.SessionID}, ids...)
	}
	// ids: 4 ended, 3 minted, 2 ended, 1 minted, 0 ended (newest first).
	for _, tc := range []struct {
		path string
		want [][]string
	}{
		{"/session", [][]string{ids}},
		{"/session?limit=2", [][]string{ids[0:2], ids[2:4], ids[4:]}},
		{"/session?limit=5", [][]string{ids}},
		{"/session?state=ended&limit=2", [][]string{{ids[0], ids[2]}, {ids[4]}}},
		{"/session?state=live", [][]string{{ids[1], ids[3]}}},
		{"/session?state=active", [][]string{{}}},
	} {
		got := sessionIDs(pages[[]store.SessionInfo](t, e, tc.path))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("GET %s: unexpected pages (-want +got):\n%s", tc.path, diff)
		}
	}
	// An empty page is an empty array, not null.
	if r := e.getOK("/session?state=connecting"); string(r.body) != "[]\n" {
		t.Errorf("unexpected empty listing (-want +got):\n%s", cmp.Diff("[]\n", string(r.body)))
	}
}

func TestConsolePages(t *testing.T) {
	e := newEnv(t, envOptions{consoles: 3})
	got := pages[[]api.Console](t, e, "/console?limit=2")
	var uuids [][]string
	for _, p := range got {
		var page []string
		for _, c := range p {
			page = append(page, c.UUID)
		}
		uuids = append(uuids, page)
	}
	if diff := cmp.Diff([][]string{{uuidOf(0), uuidOf(1)}, {uuidOf(2)}}, uuids); diff != "" {
		t.Errorf("unexpected console pages (-want +got):\n%s", diff)
	}
}

func TestListingBadQueries(t *testing.T) {
	e := newEnv(t, envOptions{consoles: 1})
	for _, tc := range []struct {
		path, want string
	}{
		{"/session?limit=0", `query parameter limit="0": want a number of items from 1 to 1000`},
		{"/session?limit=1001", `query parameter limit="1001": want a number of items from 1 to 1000`},
		{"/session?limit=ten", `query parameter limit="ten": want a number of items from 1 to 1000`},
		{"/session?state=zombie", `query parameter state "zombie": want live, minted, connecting, active or ended`},
		{"/session?cursor=" + url.QueryEscape("not a cursor"), "query parameter cursor: malformed; pass the cursor of the previous page unchanged"},
		{"/session?limit=1&limit=2", `query parameter "limit" given 2 times: give it once`},
		{"/session?page=2", `unknown query parameter "page": this listing takes state, limit, cursor`},
		{"/console?state=live", `unknown query parameter "state": this listing takes limit, cursor`},
	} {
		msg := decodeError(t, "GET "+tc.path, e.get(tc.path), 400)
		if diff := cmp.Diff(tc.want, msg); diff != "" {
			t.Errorf("GET %s: unexpected error (-want +got):\n%s", tc.path, diff)
		}
	}
}
