// Command dovetailbench measures the spam engine in-process on the fixed
// corpus split (the same split TestCorpusAccuracy uses: FNV-1a of the file
// name, even = train): it trains Bayes on the training half, scores the test
// half with -c goroutines and prints one JSON object. With -split it only
// prints the file lists, so the peers in bench/spam/run.sh score exactly the
// same messages.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/store/mem"
)

type msg struct {
	path string
	data []byte
	spam bool
}

func isTrain(name string) bool {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()%2 == 0
}

// cpuTime is the process' user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	corpus := flag.String("corpus", "../shared/corpus", "corpus dir with ham/ and spam/")
	split := flag.String("split", "", "print the file list of train-ham, train-spam, test-ham or test-spam and exit")
	conc := flag.Int("c", 1, "concurrent scanners")
	bayes := flag.Bool("bayes", true, "train and use Bayes")
	rounds := flag.Int("rounds", 3, "score the test half this many times (throughput: median round)")
	flag.Parse()

	var all []msg
	for _, class := range []string{"ham", "spam"} {
		names, _ := filepath.Glob(filepath.Join(*corpus, class, "*"))
		sort.Strings(names)
		for _, n := range names {
			if *split != "" {
				set := "test"
				if isTrain(filepath.Base(n)) {
					set = "train"
				}
				if *split == set+"-"+class {
					fmt.Println(n)
				}
				continue
			}
			b, err := os.ReadFile(n)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			all = append(all, msg{n, b, class == "spam"})
		}
	}
	if *split != "" {
		return
	}
	ctx := context.Background()
	cfg := spam.DefaultConfig()
	cfg.Bayes.Enabled = *bayes
	e, err := spam.New(cfg, spam.WithStore(mem.New()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var test []msg
	for _, m := range all {
		if !isTrain(filepath.Base(m.path)) {
			test = append(test, m)
			continue
		}
		if *bayes {
			pm, _ := e.Parse(bytes.NewReader(m.data))
			_ = e.Learn(ctx, pm, m.spam, "")
		}
	}
	var ham, spm, fp, fn atomic.Int64
	var times []time.Duration
	cpu0 := cpuTime()
	for r := 0; r < *rounds; r++ {
		ham.Store(0)
		spm.Store(0)
		fp.Store(0)
		fn.Store(0)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < *conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if int(i) >= len(test) {
						return
					}
					m := test[i]
					v, err := e.Score(ctx, &spam.Input{Raw: bytes.NewReader(m.data)})
					if err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
					switch {
					case m.spam:
						spm.Add(1)
						if !v.IsSpam {
							fn.Add(1)
						}
					default:
						ham.Add(1)
						if v.IsSpam {
							fp.Add(1)
						}
					}
				}
			}()
		}
		wg.Wait()
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	med := times[len(times)/2]
	cpu := (cpuTime() - cpu0).Seconds() / float64(*rounds)
	out := map[string]any{
		"cpu_s": cpu, "msgs_per_cpu_s": float64(len(test)) / cpu,
		"engine": "dovetail", "bayes": *bayes, "concurrency": *conc,
		"ham": ham.Load(), "spam": spm.Load(), "fp": fp.Load(), "fn": fn.Load(),
		"fp_rate":    float64(fp.Load()) / float64(max(ham.Load(), 1)),
		"recall":     1 - float64(fn.Load())/float64(max(spm.Load(), 1)),
		"msgs_per_s": float64(len(test)) / med.Seconds(),
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
