package mutant

import "testing"

func TestEnableDisable(t *testing.T) {
	a, b := new(int), new(int)
	if On(a, FixedCaps) {
		t.Fatal("on before Enable")
	}
	Enable(a, FixedCaps, EarlyLinkOK)
	if !On(a, FixedCaps) || !On(a, EarlyLinkOK) || On(a, ReusableTokens) || On(b, FixedCaps) {
		t.Fatal("Enable switched on the wrong mutations or owners")
	}
	Disable(a)
	if On(a, FixedCaps) || active.Load() != 0 {
		t.Fatal("still on after Disable")
	}
}
