package middleware_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/middleware"
)

func TestNewThrottleValidatesArguments(t *testing.T) {
	for _, tc := range []struct {
		perSecond float64
		burst     int
		err       string // "" when valid
	}{
		{10, 1, ""},
		{0.5, 0, ""}, // burst 0 means 1
		{math.Inf(1), 5, ""},
		{0, 1, "perSecond = 0"},
		{-1, 1, "perSecond = -1"},
		{math.NaN(), 1, "perSecond = NaN"},
		{1e-10, 1, "want at least one message every"},
		{10, -3, "burst = -3"},
	} {
		mw, err := middleware.NewThrottle(tc.perSecond, tc.burst)
		if tc.err == "" {
			require.NoError(t, err, "NewThrottle(%v, %d)", tc.perSecond, tc.burst)
			require.NotNil(t, mw)
			continue
		}
		require.ErrorIs(t, err, final.ErrInvalidOption, "NewThrottle(%v, %d)", tc.perSecond, tc.burst)
		require.ErrorContains(t, err, tc.err)
		require.Nil(t, mw)
	}
}
