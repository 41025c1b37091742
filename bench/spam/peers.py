#!/usr/bin/env python3
"""Drive spamd and rspamd over the fixed corpus split (stdlib only).

  peers.py dnssink PORT COUNTFILE            answer every DNS query REFUSED, count them
  peers.py rspamd-learn CTRL_PORT LIST spam|ham
  peers.py score spamd|rspamd PORT LIST_HAM LIST_SPAM CONC PIDS...
      -> one JSON line: fp, fn, msgs/s, peak RSS of the process trees PIDS
  peers.py summary RESULTS.jsonl             medians per engine, throughput ratios

Clients speak the spamc protocol (CHECK SPAMC/1.5, one connection per message,
as spamc does) and rspamc's HTTP /checkv2 (keep-alive) directly: no client
process per message, so the peers are measured without fork/exec overhead.

Verdicts: spamd "Spam: True" (score >= required_score 5.0); rspamd: action other
than "no action" and "greylist" (score >= add header 6), greylist counted apart.
"""
import http.client, json, os, socket, struct, sys, threading, time

RSPAMD_ADD_HEADER = 6.0  # Debian's actions.conf: add header at 6


def dnssink(port, countfile):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(port)))
    n = 0
    while True:
        data, addr = s.recvfrom(4096)
        if len(data) < 12:
            continue
        n += 1
        with open(countfile, "w") as f:
            f.write(str(n))
        # Same id, QR=1, opcode copied, RCODE=5 (REFUSED), question echoed.
        flags = struct.unpack("!H", data[2:4])[0]
        resp = data[:2] + struct.pack("!H", 0x8000 | (flags & 0x7900) | 5) + data[4:6] + b"\0\0\0\0\0\0" + data[12:]
        s.sendto(resp, addr)


def read_list(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


def rspamd_learn(port, lst, cls):
    ok = 0
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
    for p in read_list(lst):
        body = open(p, "rb").read()
        conn.request("POST", "/learn" + cls, body, {"Learn-Type": "bulk"})
        r = conn.getresponse()
        r.read()
        ok += r.status == 200
    print(f"rspamd learned {ok} {cls}", file=sys.stderr)


def spamd_check(sock, body):
    req = b"CHECK SPAMC/1.5\r\nContent-length: %d\r\nUser: nobody\r\n\r\n" % len(body) + body
    sock.sendall(req)
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    for line in buf.split(b"\r\n"):
        if line.startswith(b"Spam:"):
            return line.split(b";")[0].strip().endswith(b"True"), False, None
    raise RuntimeError("bad spamd answer: %r" % buf[:200])


def rspamd_check(conn, body):
    conn.request("POST", "/checkv2", body, {"Pass": "all"})
    r = conn.getresponse()
    res = json.loads(r.read())
    act = res.get("action", "no action")
    # Without Bayes: the same sum less the BAYES_SPAM/BAYES_HAM weights against
    # the add-header threshold (rspamd's score is a plain sum of symbol weights).
    bayes = sum(v.get("score", 0) for k, v in res.get("symbols", {}).items() if k.startswith("BAYES_"))
    return act not in ("no action", "greylist"), act == "greylist", res.get("score", 0) - bayes >= RSPAMD_ADD_HEADER


def tree_pids(pids):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except OSError:
                pass
    todo, seen = list(pids), set()
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += children.get(p, [])
    return seen


def tree_cpu(pids):
    """CPU seconds (user+sys, including reaped children) of the process trees."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree_pids(pids):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except OSError:
            pass
    return total / tck


def tree_rss(pids):
    """Sum of VmRSS (KiB) over pids and all their descendants."""
    total = 0
    for p in tree_pids(pids):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def score(kind, port, lham, lspam, conc, pids):
    items = [(p, False) for p in read_list(lham)] + [(p, True) for p in read_list(lspam)]
    bodies = [(open(p, "rb").read(), s) for p, s in items]
    res = {"fp": 0, "fn": 0, "grey_ham": 0, "grey_spam": 0, "ham": 0, "spam": 0, "fp_nobayes": 0, "fn_nobayes": 0}
    lock = threading.Lock()
    idx = [0]
    peak = [0]
    done = threading.Event()

    def sampler():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(pids))
            time.sleep(0.2)

    errors = []

    def worker():
        try:
            work()
        except Exception as e:  # a broken peer answer must fail the run, not skew it
            errors.append(e)

    def work():
        conn = None
        if kind == "rspamd":
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = idx[0]
                idx[0] += 1
            if i >= len(bodies):
                return
            body, is_spam = bodies[i]
            if kind == "spamd":
                s = socket.create_connection(("127.0.0.1", port), timeout=120)
                flagged, grey, nobayes = spamd_check(s, body)
                s.close()
            else:
                flagged, grey, nobayes = rspamd_check(conn, body)
            with lock:
                if is_spam:
                    res["spam"] += 1
                    res["fn"] += not flagged
                    res["grey_spam"] += grey
                    res["fn_nobayes"] += nobayes is False
                else:
                    res["ham"] += 1
                    res["fp"] += flagged
                    res["grey_ham"] += grey
                    res["fp_nobayes"] += nobayes is True

    st = threading.Thread(target=sampler, daemon=True)
    st.start()
    cpu0 = tree_cpu(pids)
    t0 = time.time()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el = time.time() - t0
    cpu = tree_cpu(pids) - cpu0
    done.set()
    st.join()
    if errors:
        sys.exit(f"{kind}: {errors[0]}")
    if kind == "spamd":  # spamd's no-Bayes figures come from a run with bayes-off.cf
        del res["fp_nobayes"], res["fn_nobayes"]
    res.update(engine=kind, concurrency=conc, msgs_per_s=len(bodies) / el,
               fp_rate=res["fp"] / max(res["ham"], 1), recall=1 - res["fn"] / max(res["spam"], 1),
               peak_rss_mib=round(peak[0] / 1024, 1), cpu_s=round(cpu, 2),
               msgs_per_cpu_s=round(len(bodies) / max(cpu, 1e-9), 1))
    print(json.dumps(res))


def summary(path):
    """Medians per engine/Bayes/concurrency over the rounds, and throughput ratios."""
    rows = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows.setdefault((r["engine"], bool(r.get("bayes", True)), r["concurrency"]), []).append(r)

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    agg = {}
    for k, rs in sorted(rows.items()):
        a = {f: med([r[f] for r in rs]) for f in ("msgs_per_s", "msgs_per_cpu_s", "fp", "fn", "ham", "spam")}
        a["peak_rss_mib"] = max(r.get("peak_rss_mib", 0) for r in rs)
        a["runs"] = len(rs)
        if "fp_nobayes" in rs[0]:
            a["fp_nobayes"] = med([r["fp_nobayes"] for r in rs])
            a["fn_nobayes"] = med([r["fn_nobayes"] for r in rs])
        agg[k] = a
        print("%-8s bayes=%-5s c=%d runs=%d  FP %d/%d (%.2f%%)  recall %.2f%%  %.1f msgs/s  %.1f msgs/CPU-s  peak RSS %.0f MiB%s" % (
            k[0], k[1], k[2], a["runs"], a["fp"], a["ham"], 100 * a["fp"] / max(a["ham"], 1),
            100 * (1 - a["fn"] / max(a["spam"], 1)), a["msgs_per_s"], a["msgs_per_cpu_s"], a["peak_rss_mib"],
            "  [score less BAYES_*: FP %d, recall %.2f%%]" % (a["fp_nobayes"], 100 * (1 - a["fn_nobayes"] / max(a["spam"], 1)))
            if "fp_nobayes" in a else ""))
    for c in (1, 2):
        d = agg.get(("dovetail", True, c))
        for peer in ("rspamd", "spamd"):
            p = agg.get((peer, True, c))
            if d and p:
                print("c=%d dovetail/%s: %.1fx msgs/s, %.1fx msgs/CPU-s" % (
                    c, peer, d["msgs_per_s"] / p["msgs_per_s"], d["msgs_per_cpu_s"] / p["msgs_per_cpu_s"]))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "dnssink":
        dnssink(sys.argv[2], sys.argv[3])
    elif cmd == "summary":
        summary(sys.argv[2])
    elif cmd == "rspamd-learn":
        rspamd_learn(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "score":
        score(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]), [int(p) for p in sys.argv[7:]])
    else:
        sys.exit("unknown command " + cmd)
