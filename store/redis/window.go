package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// windowScript keeps a sliding window as a hash of buckets, the same model as
// store/sqlite: events in one window/60-wide slot share a bucket stamped with the
// latest of them ("<latest ms>:<count>"), so a key holds at most ~61 fields however
// busy it is and an event counts at most window/60 longer than exact. The script
// drops buckets at or before now-window, adds n to the current slot's bucket,
// refreshes the key's expiry to one window and returns the sum — atomically.
//
// KEYS[1] window; ARGV[1] now ms, ARGV[2] window ms, ARGV[3] n.
// Lua numbers are doubles: Unix milliseconds and counts stay exact below 2^53;
// string.format('%d') keeps them out of exponent notation.
var windowScript = goredis.NewScript(`
local now, win, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local width = math.max(math.floor(win / 60), 1)
local cut = now - win
local cur = math.floor(now / width)
local all = redis.call('HGETALL', KEYS[1])
local total, dead, hit, hitAt, hitN = 0, {}, nil, 0, 0
for i = 1, #all, 2 do
	local v = all[i + 1]
	local sep = string.find(v, ':', 1, true)
	local at, c
	if sep then
		at, c = tonumber(string.sub(v, 1, sep - 1)), tonumber(string.sub(v, sep + 1))
	end
	if at == nil or c == nil or at <= cut then -- expired, or not ours: drop it
		dead[#dead + 1] = all[i]
	else
		total = total + c
		if n ~= 0 and hit == nil and math.floor(at / width) == cur then
			hit, hitAt, hitN = all[i], at, c
		end
	end
end
if #dead > 0 then
	redis.call('HDEL', KEYS[1], unpack(dead))
end
if n ~= 0 then
	if hit == nil then
		hit, hitAt = string.format('%d', cur), now
	end
	redis.call('HSET', KEYS[1], hit, string.format('%d:%d', math.max(hitAt, now), hitN + n))
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
	total = total + n
end
return total`)

// WindowAdd records n events at now in the sliding window at key and returns the
// events in (now-window, now] (bucketed, see windowScript). n = 0 only reads.
func (s *Store) WindowAdd(ctx context.Context, key string, now time.Time, window time.Duration, n int64) (int64, error) {
	if window <= 0 {
		return 0, fmt.Errorf("redis windowadd: window %v must be positive", window)
	}
	if err := s.start(ctx, "windowadd"); err != nil {
		return 0, err
	}
	total, err := windowScript.Run(ctx, s.c, []string{s.key(key)}, now.UnixMilli(), ms(window), n).Int64()
	if err != nil {
		return 0, s.fail(ctx, "windowadd", err)
	}
	return total, nil
}

// WindowAddGetMulti is WindowAdd and GetMulti(keys) in one pipeline: the script,
// then one GET per key (see store.WindowAddGetMulti). The total and the error
// are the script's alone; the GETs' values are nil when they failed. A script
// cache that lost the script (NOSCRIPT: Redis restarted, SCRIPT FLUSH) means
// the script did not run, and it is sent whole in a second round trip, as
// WindowAdd does.
func (s *Store) WindowAddGetMulti(ctx context.Context, key string, now time.Time, window time.Duration, n int64, keys ...string) (int64, [][]byte, error) {
	if window <= 0 {
		return 0, nil, fmt.Errorf("redis windowadd: window %v must be positive", window)
	}
	if err := s.start(ctx, "windowadd"); err != nil {
		return 0, nil, err
	}
	wkeys := []string{s.key(key)}
	args := []any{now.UnixMilli(), ms(window), n}
	var add *goredis.Cmd
	gets := make([]*goredis.StringCmd, len(keys))
	_, _ = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		add = windowScript.EvalSha(ctx, p, wkeys, args...)
		for i, k := range keys {
			gets[i] = p.Get(ctx, s.key(k))
		}
		return nil
	})
	total, aerr := add.Int64()
	if aerr != nil && goredis.HasErrorPrefix(aerr, "NOSCRIPT") {
		total, aerr = windowScript.Eval(ctx, s.c, wkeys, args...).Int64()
	}
	if aerr != nil {
		return 0, nil, s.fail(ctx, "windowadd", aerr)
	}
	// Each GET carries its own error (the pipeline's is the first of any).
	vals, err := values(gets)
	if err != nil {
		return total, nil, nil
	}
	return total, vals, nil
}
