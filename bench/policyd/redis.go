package main

import (
	"context"

	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/redis"
)

func init() {
	openRedis = func(_ context.Context, addr string) (store.Store, error) {
		return redis.New(redis.Options{Addrs: []string{addr}, Prefix: "policyd-bench:"})
	}
}
