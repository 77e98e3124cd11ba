package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Block is a subject on the block list: every request it makes is refused
// until Until.
type Block struct {
	Key       string    `json:"key"`
	Reason    string    `json:"reason"`
	Until     time.Time `json:"until"`
	CreatedAt time.Time `json:"created_at"`
}

// The block list: one key per blocked subject (its JSON, expiring at
// Until), read on every request; and a sorted set of subjects by Until,
// read only to list them.
func (l *Limiter) blockKey(subject string) string { return l.key("block", subject) }
func (l *Limiter) blockIndex() string             { return l.cfg.Prefix + "blocks" }

// Block puts subject on the block list for d (replacing any block it had).
func (l *Limiter) Block(ctx context.Context, subject, reason string, d time.Duration) (Block, error) {
	b, _, err := l.block(ctx, subject, reason, d, false)
	return b, err
}

// block blocks subject for d; with onlyNew, only if it has no block now
// (created says whether this call made it).
func (l *Limiter) block(ctx context.Context, subject, reason string, d time.Duration, onlyNew bool) (b Block, created bool, err error) {
	now := l.now().UTC()
	b = Block{Key: subject, Reason: reason, Until: now.Add(d).Truncate(time.Millisecond), CreatedAt: now.Truncate(time.Millisecond)}
	raw, err := json.Marshal(b)
	if err != nil {
		return Block{}, false, err
	}
	if onlyNew {
		ok, err := l.rdb.SetNX(ctx, l.blockKey(subject), raw, d).Result()
		if err != nil {
			return Block{}, false, fmt.Errorf("block %s: %w", subject, err)
		}
		if !ok {
			return Block{}, false, nil
		}
	}
	_, err = l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if !onlyNew {
			p.Set(ctx, l.blockKey(subject), raw, d)
		}
		p.ZAdd(ctx, l.blockIndex(), redis.Z{Score: float64(b.Until.UnixMilli()), Member: subject})
		p.ZRemRangeByScore(ctx, l.blockIndex(), "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
		return nil
	})
	if err != nil {
		return Block{}, false, fmt.Errorf("block %s: %w", subject, err)
	}
	return b, true, nil
}

// Blocked returns subject's block, or nil when it has none.
func (l *Limiter) Blocked(ctx context.Context, subject string) (*Block, error) {
	return l.readBlock(l.rdb.Get(ctx, l.blockKey(subject)))
}

// readBlock reads the answer to a GET of a block key.
func (l *Limiter) readBlock(get *redis.StringCmd) (*Block, error) {
	raw, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read block: %w", err)
	}
	return l.parseBlock(raw)
}

// parseBlock reads a block key's value: nil when the block has ended.
func (l *Limiter) parseBlock(raw []byte) (*Block, error) {
	var b Block
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("read block: %w", err)
	}
	if !b.Until.After(l.now()) {
		return nil, nil
	}
	return &b, nil
}

// Blocks lists the subjects blocked now, the soonest to end first.
func (l *Limiter) Blocks(ctx context.Context) ([]Block, error) {
	now := strconv.FormatInt(l.now().UnixMilli(), 10)
	subjects, err := l.rdb.ZRangeByScore(ctx, l.blockIndex(), &redis.ZRangeBy{Min: "(" + now, Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	if len(subjects) == 0 {
		return []Block{}, nil
	}
	keys := make([]string, len(subjects))
	for i, s := range subjects {
		keys[i] = l.blockKey(s)
	}
	vals, err := l.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	out := make([]Block, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // cleared or expired since the range was read
		}
		var b Block
		if json.Unmarshal([]byte(s), &b) == nil {
			out = append(out, b)
		}
	}
	return out, nil
}

// Unblock lifts subject's block; it reports whether there was one.
func (l *Limiter) Unblock(ctx context.Context, subject string) (bool, error) {
	var del *redis.IntCmd
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, l.blockKey(subject))
		p.ZRem(ctx, l.blockIndex(), subject)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("unblock %s: %w", subject, err)
	}
	return del.Val() > 0, nil
}
