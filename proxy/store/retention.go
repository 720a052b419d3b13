package store

import (
	"sort"
	"time"

	"github.com/spiceharness/spiceharness/static"
)

// What the store keeps, and for how long:
//
//   - a minted token's session until its token expired unused and one
//     more TokenTTL passed (Authorize then says "expired", not "unknown");
//   - a connecting or active session while it lives;
//   - an ended session for EndedRetention, and never more than MaxEnded
//     of them (the oldest go first).
//
// A forgotten session's token is forgotten too, so it is refused as
// unknown (PERMISSION_DENIED), as it was refused as used or ended before.
// A timer runs the sweep while something is due to expire, so memory
// follows the live sessions even when nothing else calls the store.

// sessionIndex holds the sessions in mint order (ascending seq) for the
// listings. Forgotten sessions are marked gone and compacted away once
// they are half the list, so adding and forgetting are O(1) amortized.
type sessionIndex struct {
	list []*session
	gone int
}

func (x *sessionIndex) add(ss *session) { x.list = append(x.list, ss) }

func (x *sessionIndex) remove(ss *session) {
	ss.gone = true
	x.gone++
	if x.gone > 32 && x.gone > len(x.list)/2 {
		kept := x.list[:0]
		for _, s := range x.list {
			if !s.gone {
				kept = append(kept, s)
			}
		}
		clear(x.list[len(kept):]) // drop the references
		x.list, x.gone = kept, 0
	}
}

// before returns the position of the first session with seq >= seq: the
// sessions before it are older.
func (x *sessionIndex) before(seq uint64) int {
	return sort.Search(len(x.list), func(i int) bool { return x.list[i].seq >= seq })
}

// endedQueue holds ended sessions in the order they ended.
type endedQueue struct {
	list []*session
	head int
}

func (q *endedQueue) push(ss *session) { q.list = append(q.list, ss) }
func (q *endedQueue) len() int         { return len(q.list) - q.head }
func (q *endedQueue) front() *session  { return q.list[q.head] }

func (q *endedQueue) pop() *session {
	ss := q.list[q.head]
	q.list[q.head] = nil
	q.head++
	if q.head > 32 && q.head > len(q.list)/2 {
		q.list = append(q.list[:0], q.list[q.head:]...)
		q.head = 0
	}
	return ss
}

// endedLocked records that ss just ended: it no longer counts as live
// and is kept for EndedRetention at most, MaxEnded sessions at most.
func (s *Store) endedLocked(ss *session) {
	s.unliveLocked(ss.key)
	if s.opts.EndedRetention < 0 {
		s.forgetLocked(ss)
		return
	}
	s.ended.push(ss)
	if s.opts.MaxEnded > 0 {
		for s.ended.len() > s.opts.MaxEnded {
			s.forgetLocked(s.ended.pop())
		}
	}
	s.armSweepLocked()
}

// forgetLocked drops ss and its token.
func (s *Store) forgetLocked(ss *session) {
	if ss.gone {
		return
	}
	delete(s.sessions, ss.id)
	delete(s.tokens, ss.token)
	s.index.remove(ss)
	if ss.state != stateEnded {
		s.unliveLocked(ss.key)
	}
}

// unliveLocked counts one live session of k less.
func (s *Store) unliveLocked(k static.Key) {
	if s.live[k]--; s.live[k] <= 0 {
		delete(s.live, k)
	}
}

// sweepLocked forgets the ended sessions past EndedRetention and the
// unused sessions whose token expired a TokenTTL ago. It returns when the
// next one is due (zero when nothing is).
func (s *Store) sweepLocked(now time.Time) (next time.Time) {
	s.lastSweep = now
	due := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for s.ended.len() > 0 {
		ss := s.ended.front()
		if at := ss.ended.Add(s.opts.EndedRetention); now.Before(at) {
			due(at)
			break
		}
		s.forgetLocked(s.ended.pop())
	}
	for _, ss := range s.sessions {
		if ss.state != stateMinted {
			continue
		}
		if at := ss.expires.Add(s.opts.TokenTTL); now.After(at) {
			s.forgetLocked(ss)
		} else {
			due(at)
		}
	}
	return next
}

// armSweepLocked makes sure a sweep runs within sweepInterval.
func (s *Store) armSweepLocked() {
	if s.sweep == nil {
		s.sweep = time.AfterFunc(sweepInterval, s.sweepTick)
	}
}

// sweepTick is the timer's sweep: it re-arms itself while something is
// due to expire, at most once per sweepInterval, and stops when nothing
// is (the store then holds no timer).
func (s *Store) sweepTick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	next := s.sweepLocked(now)
	if next.IsZero() {
		s.sweep = nil
		return
	}
	s.sweep.Reset(max(next.Sub(now), sweepInterval))
}
