#!/usr/bin/env python3
"""Helpers for bench/compare.sh and bench/callgrind.sh. Standard library only, so a fresh machine
needs nothing from pip.

Subcommands
  freeport                      print a free TCP port on 127.0.0.1
  run   [options] -- PGBENCH... run one pgbench, sample a pooler's CPU while it runs, read the
                                per-transaction logs, append one JSON record to --out
  hold  [options]               open N authenticated client connections (SCRAM/md5/cleartext/trust),
                                (--query SQL: run it once on each after login), write --ready-file
                                once all are up, hold them until SIGTERM/SIGINT
  rss PID                       print VmRSS of PID in KiB
  report [options]              print the result tables (Markdown) from the JSONL files
  cgtotal FILE                  print the instructions (Ir) a callgrind output file counted
  cgreport [options]            print instructions per transaction (Markdown) from callgrind.sh's JSONL
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# /proc readers


def cpu_times(pid):
    """(utime + stime, utime) of a whole process (all its threads), in clock ticks; None if it is
    gone. The kernel's share (stime) is mostly the socket calls, the same for every pooler."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12]), int(fields[11])


def cpu_ticks(pid):
    """utime + stime of a whole process, in clock ticks; None if it is gone."""
    t = cpu_times(pid)
    return t[0] if t else None


def machine_busy():
    """Busy time of the whole machine, all cores, in clock ticks (/proc/stat: user, nice, system,
    irq, softirq, steal; idle and iowait left out): the pooler, PostgreSQL, pgbench and the
    kernel's work for all of them."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return user + nice + system + irq + softirq + steal


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------------------------------------
# run: one pgbench run


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def read_tx_logs(logdir):
    """Completion time (s since epoch) and latency (us) of every transaction in the pgbench logs.

    pgbench -l writes one line per transaction: client_id transaction_no time script_no
    time_epoch time_us [...]; `time` is the latency in microseconds, or `failed`/`skipped`;
    time_epoch.time_us is when the transaction ended."""
    tx, bad = [], 0
    for name in sorted(os.listdir(logdir)):
        if not name.startswith("tx."):
            continue
        with open(os.path.join(logdir, name)) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                if not parts[2].isdigit():
                    bad += 1
                    continue
                tx.append((int(parts[4]) + int(parts[5]) / 1e6, int(parts[2])))
    tx.sort()
    return tx, bad


def steady_window(tx, samples):
    """The measurement window of a run: from shortly after the first transaction ended to shortly
    before the last one did. pgbench opens all its connections before the first transaction (and
    counts that time in -T), so this leaves out the connection phase (one SCRAM handshake per
    client) and the ragged end. When a pooler's CPU was sampled, the window's ends are snapped to
    the first and last samples inside it, so CPU and transactions are counted over the same span."""
    first, last = tx[0][0], tx[-1][0]
    span = last - first
    t0, t1 = first + min(1.0, span * 0.1), last - min(0.5, span * 0.05)
    if samples:
        inside = [x for x in samples if t0 <= x[0] <= t1 and x[1] is not None]
        if len(inside) >= 2:
            return inside[0], inside[-1]
        return None
    return (t0, None, None, None), (t1, None, None, None)


def connect_allowance(state_file, key, clients):
    """Seconds added to -T for the connection phase: 1.5x what it took last time for this target
    and client count plus 1 s, or a guess of 1 s + 30 ms per client the first time."""
    try:
        with open(state_file) as f:
            last = json.load(f).get(key)
    except (OSError, ValueError):
        last = None
    if last is None:
        return 1 + int(clients * 0.03 + 0.999)
    return 1 + int(last * 1.5 + 0.999)


def remember_connect(state_file, key, secs):
    try:
        with open(state_file) as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = {}
    state[key] = secs
    with open(state_file, "w") as f:
        json.dump(state, f)


def cmd_run(args):
    rec = run_attempt(args)
    if rec["ok"] and rec.get("window_s", 0) < 0.6 * args.duration:
        # The connection phase took longer than allowed for (the machine got busier): the allowance
        # now knows the new connection time, so run again rather than report a short window.
        print(f"  (window {rec.get('window_s')} s is short of {args.duration} s: running again)", flush=True)
        rec = run_attempt(args)
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    status = "ok" if rec["ok"] else "FAILED: " + rec["error"]
    tps = f"{rec['tps']:.0f}" if rec.get("tps") else "-"
    print(
        f"  {rec.get('mode')} c={rec.get('clients')} {rec.get('target'):9} r{rec.get('round')}: "
        f"tps {tps}  p99 {rec.get('lat_p99_ms', 0):.2f} ms  window {rec.get('window_s', 0)} s "
        f"of {rec['elapsed_s']:.1f} s  {status}",
        flush=True,
    )


def run_attempt(args):
    import threading

    os.makedirs(args.logdir, exist_ok=True)
    for name in os.listdir(args.logdir):
        os.unlink(os.path.join(args.logdir, name))
    rec = dict(json.loads(args.label))
    key = f"{rec.get('target')}/{rec.get('clients')}"
    allowance = connect_allowance(args.state, key, int(rec.get("clients", 1)))
    total = args.duration + allowance
    cmd = args.pgbench + ["-T", str(total), "-l", "--log-prefix", os.path.join(args.logdir, "tx")]
    pid = args.pid or None
    samples = []
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timed_out = False
    out = {}

    def reader():
        out["stdout"], out["stderr"] = proc.communicate()

    t = threading.Thread(target=reader)
    t.start()
    # Sample the pooler's CPU every 100 ms until pgbench exits.
    while t.is_alive():
        if pid:
            ct = cpu_times(pid)
            samples.append((time.time(), ct[0] if ct else None, ct[1] if ct else None, machine_busy()))
        t.join(0.1)
        if time.time() - started > total + args.timeout:
            timed_out = True
            proc.kill()
            t.join()
    elapsed = time.time() - started
    stdout, stderr = out.get("stdout", ""), out.get("stderr", "")

    rec["cmd"] = " ".join(cmd)
    rec["returncode"] = proc.returncode
    rec["elapsed_s"] = round(elapsed, 2)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", stdout)
    rec["pgbench_tps"] = float(m.group(1)) if m else None
    m = re.search(r"number of transactions actually processed: (\d+)", stdout)
    rec["tx"] = int(m.group(1)) if m else None
    m = re.search(r"number of failed transactions: (\d+)", stdout)
    rec["failed_tx"] = int(m.group(1)) if m else 0
    m = re.search(r"initial connection time = ([0-9.]+) ms", stdout)
    rec["connect_ms"] = float(m.group(1)) if m else None

    tx, bad = read_tx_logs(args.logdir)
    rec["logged_tx"] = len(tx)
    if tx:
        # Time from the start to the first completed transaction: the connection phase, as seen here.
        rec["connect_phase_s"] = round(max(0.0, tx[0][0] - started), 3)
        remember_connect(args.state, key, max(0.0, tx[0][0] - started))
    else:
        remember_connect(args.state, key, elapsed)
    w = steady_window(tx, samples if pid else None) if len(tx) >= 20 else None
    if w:
        (t0, c0, u0, m0), (t1, c1, u1, m1) = w
        lat = sorted(l for (d, l) in tx if t0 < d <= t1)
        secs = t1 - t0
        rec["window_s"] = round(secs, 2)
        rec["window_tx"] = len(lat)
        if lat and secs > 0:
            rec["tps"] = len(lat) / secs
            rec["lat_avg_ms"] = sum(lat) / len(lat) / 1000
            rec["lat_p50_ms"] = percentile(lat, 50) / 1000
            rec["lat_p99_ms"] = percentile(lat, 99) / 1000
            if pid:
                cpu_s = (c1 - c0) / CLK_TCK
                rec["cpu_ms_per_1k_tx"] = cpu_s * 1000 / len(lat) * 1000
                rec["user_cpu_ms_per_1k_tx"] = (u1 - u0) / CLK_TCK * 1000 / len(lat) * 1000
                rec["cpu_cores_busy"] = round(cpu_s / secs, 3)
                # Everything on the machine over the same window: what the transactions cost in
                # all (pooler + PostgreSQL + pgbench + kernel), so the pooler's share, and what a
                # pooler costing nothing could reach, can be read off (the report's "Where the
                # cores went").
                machine_s = (m1 - m0) / CLK_TCK
                rec["machine_cpu_ms_per_1k_tx"] = machine_s * 1000 / len(lat) * 1000
                rec["machine_cores_busy"] = round(machine_s / secs, 3)
    if pid:
        rec["pooler_alive"] = cpu_ticks(pid) is not None

    errors = [l for l in stderr.splitlines() if "error" in l.lower() or "fatal" in l.lower()]
    ok = (
        not timed_out
        and proc.returncode == 0
        and rec.get("tps") is not None
        and rec["failed_tx"] == 0
        and bad == 0
        and "aborted" not in stdout + stderr
    )
    rec["ok"] = ok
    if not ok:
        why = "timed out" if timed_out else (errors[0] if errors else stderr.strip()[:300])
        if not why and rec.get("tps") is None:
            why = (f"too few transactions to measure ({len(tx)} in {elapsed:.1f} s; "
                   f"initial connection time {rec['connect_ms']} ms)")
        rec["error"] = (why or f"exit code {proc.returncode}")[:400]
        rec["stdout_tail"] = stdout[-1500:]
        rec["stderr_tail"] = stderr[-1500:]
    for name in os.listdir(args.logdir):
        os.unlink(os.path.join(args.logdir, name))
    return rec


# ---------------------------------------------------------------------------------------------
# hold: many idle, authenticated connections


class PgError(Exception):
    pass


async def read_message(reader):
    head = await reader.readexactly(5)
    tag, length = head[:1], struct.unpack("!i", head[1:])[0]
    return tag, await reader.readexactly(length - 4)


def message(tag, body):
    return tag + struct.pack("!i", len(body) + 4) + body


def error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1]] = part[1:].decode("utf-8", "replace")
    return f"{fields.get(b'S', 'ERROR')}: {fields.get(b'M', '?')} ({fields.get(b'C', '')})"


_salted_cache = {}


def salted_password(password, salt, iterations):
    # The pbkdf2 result only depends on (password, salt, iterations): a pooler that keeps one salt
    # per user would otherwise make this client burn a core on 10,000 identical derivations.
    key = (password, salt, iterations)
    if key not in _salted_cache:
        _salted_cache[key] = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return _salted_cache[key]


_TLS_CONTEXT = None


def tls_context():
    """One client context for every connection: making one per connection loads the system's CA
    list each time (megabytes, and most of the CPU of a TLS hold)."""
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _TLS_CONTEXT = ctx
    return _TLS_CONTEXT


async def connect(host, port, user, password, database, tls=False):
    """Opens one connection and logs in; returns (reader, writer) after ReadyForQuery. `tls`:
    SSLRequest first, then TLS (certificate not checked: this measures memory, not trust)."""
    reader, writer = await asyncio.open_connection(host, port)
    if tls:
        writer.write(struct.pack("!ii", 8, 80877103))
        await writer.drain()
        answer = await reader.readexactly(1)
        if answer != b"S":
            writer.close()
            raise PgError(f"server answered {answer!r} to SSLRequest")
        await writer.start_tls(tls_context())
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0"
    params += b"application_name\0sluice-bench-hold\0\0"
    body = struct.pack("!i", 196608) + params
    writer.write(struct.pack("!i", len(body) + 4) + body)
    scram = None
    while True:
        tag, body = await read_message(reader)
        if tag == b"E":
            writer.close()
            raise PgError(error_text(body))
        if tag == b"Z":
            return reader, writer
        if tag != b"R":
            continue  # ParameterStatus, BackendKeyData, NoticeResponse
        code = struct.unpack("!i", body[:4])[0]
        if code == 0:
            continue
        if code == 3:  # cleartext
            writer.write(message(b"p", password.encode() + b"\0"))
        elif code == 5:  # md5
            inner = hashlib.md5((password + user).encode()).hexdigest().encode()
            outer = hashlib.md5(inner + body[4:8]).hexdigest()
            writer.write(message(b"p", b"md5" + outer.encode() + b"\0"))
        elif code == 10:  # SASL: pick SCRAM-SHA-256
            mechs = body[4:].split(b"\0")
            if b"SCRAM-SHA-256" not in mechs:
                raise PgError(f"no SCRAM-SHA-256 in {mechs}")
            nonce = base64.b64encode(secrets.token_bytes(18)).decode()
            first_bare = f"n=,r={nonce}"
            first = ("n,," + first_bare).encode()
            scram = {"nonce": nonce, "first_bare": first_bare}
            writer.write(
                message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
            )
        elif code == 11:  # SASLContinue: server-first-message
            server_first = body[4:].decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            if not attrs["r"].startswith(scram["nonce"]):
                raise PgError("server nonce does not extend ours")
            salted = salted_password(password, base64.b64decode(attrs["s"]), int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            stored_key = hashlib.sha256(client_key).digest()
            final_bare = f"c=biws,r={attrs['r']}"
            auth_msg = f"{scram['first_bare']},{server_first},{final_bare}".encode()
            sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, sig))
            final = f"{final_bare},p={base64.b64encode(proof).decode()}"
            server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
            scram["expect"] = base64.b64encode(
                hmac.new(server_key, auth_msg, hashlib.sha256).digest()
            ).decode()
            writer.write(message(b"p", final.encode()))
        elif code == 12:  # SASLFinal
            if body[4:].decode() != "v=" + scram["expect"]:
                raise PgError("bad server signature")
        else:
            raise PgError(f"unsupported authentication request {code}")
        await writer.drain()


async def simple_query(conn, sql):
    """Runs `sql` as one simple Query and reads up to ReadyForQuery (an error raises)."""
    reader, writer = conn
    writer.write(message(b"Q", sql.encode() + b"\0"))
    await writer.drain()
    error = None
    while True:
        tag, body = await read_message(reader)
        if tag == b"E":
            error = error_text(body)
        if tag == b"Z":
            break
    if error:
        raise PgError(error)


async def hold(args):
    conns, failures = [], []
    sem = asyncio.Semaphore(args.concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def one():
        async with sem:
            if stop.is_set():
                return
            try:
                conn = await asyncio.wait_for(
                    connect(args.host, args.port, args.user, args.password, args.dbname, args.tls),
                    args.connect_timeout,
                )
                if args.query:
                    await asyncio.wait_for(simple_query(conn, args.query), args.connect_timeout)
                conns.append(conn)
            except Exception as e:  # noqa: BLE001 - counted and reported
                failures.append(repr(e))

    started = time.time()
    tasks = [asyncio.ensure_future(one()) for _ in range(args.n)]
    await asyncio.wait([asyncio.ensure_future(asyncio.gather(*tasks)), asyncio.ensure_future(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    secs = time.time() - started
    report = {"opened": len(conns), "failed": len(failures), "secs": round(secs, 2),
              "first_errors": sorted(set(failures))[:3]}
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f)
    os.rename(tmp, args.ready_file)
    print(f"hold: {report}", file=sys.stderr, flush=True)
    await stop.wait()
    for _, w in conns:
        try:
            w.write(message(b"X", b""))
            w.close()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
    await asyncio.sleep(0.2)


def cmd_hold(args):
    asyncio.run(hold(args))


# ---------------------------------------------------------------------------------------------
# report


# Then the peers (PgDoorman: meta["peers"]), then the sluice binaries (meta["sluices"], default
# ["sluice"]); with compare.sh --threads each thread count is a target of its own (NAME-wN).
TARGETS = ["direct", "pgbouncer"]
# tls-*: compare.sh --tls (sslmode=require); *connect: pgbench -C, one connection per transaction.
MODE_ORDER = ["ping", "simple", "extended", "prepared", "connect", "tls-simple", "tls-prepared", "tls-connect"]


def load_jsonl(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def fmt(v, digits=2):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records):
    groups = {}
    for r in records:
        groups.setdefault((r["mode"], r["clients"], r["target"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        good = [r for r in rs if r["ok"]]
        s = {"runs": len(rs), "ok": len(good), "errors": [r.get("error", "") for r in rs if not r["ok"]]}
        for k in ("tps", "lat_avg_ms", "lat_p50_ms", "lat_p99_ms", "cpu_ms_per_1k_tx", "user_cpu_ms_per_1k_tx",
                  "machine_cpu_ms_per_1k_tx", "machine_cores_busy", "connect_ms", "connect_phase_s"):
            s[k] = med([r.get(k) for r in good])
        s["connect_phase_max_s"] = max((r["connect_phase_s"] for r in rs if r.get("connect_phase_s") is not None),
                                       default=None)
        tps = [r["tps"] for r in good if r.get("tps")]
        s["spread"] = (max(tps) - min(tps)) / s["tps"] * 100 if len(tps) > 1 and s["tps"] else None
        out[key] = s
    return out


def cmd_report(args):
    records = load_jsonl(args.results)
    mem = load_jsonl(args.memory)
    meta = json.load(open(args.meta)) if args.meta and os.path.exists(args.meta) else {}
    lines = []
    p = lines.append
    if meta:
        p(f"sluice vs PgBouncer vs PgDoorman vs direct PostgreSQL — {meta.get('date', '')}")
        p("")
        for k in ("machine", "postgres", "pgbouncer", "pgdoorman", "sluice", "settings"):
            if k in meta:
                p(f"- {k}: {meta[k]}")
        p("")
    summary = summarize(records)
    modes = sorted({k[0] for k in summary}, key=lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else 99)
    # Several sluice binaries (compare.sh --sluice): each gets its rows, and the ones after the
    # first also their ratios to the first ("vs FIRST"), e.g. a branch against main.
    peers = list(meta.get("peers") or [])
    peers += sorted({k[2] for k in summary if k[2].startswith("pgdoorman")} - set(peers))
    sluices = list(meta.get("sluices") or ["sluice"])
    sluices += sorted({k[2] for k in summary} - set(TARGETS) - set(peers) - set(sluices))
    # Several sluice targets (binaries, or thread counts with --threads): the later ones get "vs FIRST".
    base = sluices[0] if len(sluices) > 1 else None
    targets = TARGETS + peers + sluices
    extra = 4 if base else 0
    head = ("| mode | clients | target | tps | lat avg ms | lat p50 ms | lat p99 ms | pooler CPU ms/1k tx "
            "| of which user | tps spread % | vs pgbouncer tps | vs direct tps | vs pgbouncer p99 "
            "| vs pgbouncer CPU | vs pgbouncer user CPU |")
    if base:
        head += f" vs {base} tps | vs {base} p99 | vs {base} CPU | vs {base} user CPU |"
    p(head)
    p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * extra)
    empty = " |" * (11 + extra)
    notes = []
    for mode in modes:
        for clients in sorted({k[1] for k in summary if k[0] == mode}):
            for target in targets:
                s = summary.get((mode, clients, target))
                if s is None:
                    if target == "pgbouncer" and mode == "prepared":
                        p(f"| {mode} | {clients} | {target} | n/a¹ |" + empty)
                    continue
                if s["ok"] == 0:
                    notes.append(f"{mode}/{clients}/{target}: {s['errors'][0]}")
                    p(f"| {mode} | {clients} | {target} | FAILED ({s['runs']}/{s['runs']} runs)² |" + empty)
                    continue
                tps = fmt(s["tps"], 0)
                if s["ok"] < s["runs"]:
                    tps += f" ({s['runs'] - s['ok']}/{s['runs']} runs FAILED)²"
                    notes.append(f"{mode}/{clients}/{target}: {s['errors'][0]}")
                cells = [mode, str(clients), target, tps, fmt(s["lat_avg_ms"], 3), fmt(s["lat_p50_ms"], 3),
                         fmt(s["lat_p99_ms"], 3), fmt(s["cpu_ms_per_1k_tx"], 1),
                         fmt(s["user_cpu_ms_per_1k_tx"], 1), fmt(s["spread"], 1)]
                if target in sluices or target in peers:
                    b = summary.get((mode, clients, "pgbouncer")) or {}
                    d = summary.get((mode, clients, "direct")) or {}
                    cells += [ratio(s["tps"], b.get("tps")), ratio(s["tps"], d.get("tps")),
                              ratio(s["lat_p99_ms"], b.get("lat_p99_ms")),
                              ratio(s["cpu_ms_per_1k_tx"], b.get("cpu_ms_per_1k_tx")),
                              ratio(s["user_cpu_ms_per_1k_tx"], b.get("user_cpu_ms_per_1k_tx"))]
                else:
                    cells += ["", "", "", "", ""]
                if base and target in sluices and target != base:
                    f = summary.get((mode, clients, base)) or {}
                    cells += [ratio(s["tps"], f.get("tps")), ratio(s["lat_p99_ms"], f.get("lat_p99_ms")),
                              ratio(s["cpu_ms_per_1k_tx"], f.get("cpu_ms_per_1k_tx")),
                              ratio(s["user_cpu_ms_per_1k_tx"], f.get("user_cpu_ms_per_1k_tx"))]
                elif base:
                    cells += [""] * extra
                p("| " + " | ".join(cells) + " |")
    p("")
    if any(k[0] == "prepared" for k in summary) and not any(
        k[0] == "prepared" and k[2] == "pgbouncer" for k in summary
    ):
        p(f"¹ PgBouncer {meta.get('pgbouncer_version', '')} has no max_prepared_statements (added in 1.21): "
          "-M prepared cannot work through it in transaction mode, so it is not run.")
    for n in notes:
        p(f"² {n}")
    p_summaries(p, summary, peers, sluices)
    if mem:
        p("")
        p("Idle client connections (fully authenticated, holding no server connection):")
        p("")
        p("| pooler | clients | opened | RSS before MiB | RSS with clients MiB | KiB per client "
          "| RSS after close MiB | connect time s |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|")
        for m in mem:
            per = (m["rss_with_kib"] - m["rss_before_kib"]) / m["opened"] if m.get("opened") else None
            p(f"| {m['target']} | {m['clients']} | {m['opened']}"
              f"{' (' + str(m['failed']) + ' failed)' if m.get('failed') else ''} "
              f"| {m['rss_before_kib'] / 1024:.1f} | {m['rss_with_kib'] / 1024:.1f} | {fmt(per, 1)} "
              f"| {m['rss_closed_kib'] / 1024:.1f} | {m['secs']} |")
        per_client = {}
        for m in mem:
            if m.get("opened"):
                per_client[(m["target"], m["clients"])] = (m["rss_with_kib"] - m["rss_before_kib"]) / m["opened"]
        tls_cost = [(t[: -len(" TLS")], n, v - per_client[(t[: -len(" TLS")], n)])
                    for (t, n), v in sorted(per_client.items())
                    if t.endswith(" TLS") and (t[: -len(" TLS")], n) in per_client]
        if tls_cost:
            p("")
            p("What TLS adds per idle client (KiB, TLS minus plain): "
              + ", ".join(f"{t} {fmt(c, 1)} ({n:,} clients)" for t, n, c in tls_cost))
        for m in mem:
            if m.get("first_errors"):
                p(f"- {m['target']} {m['clients']}: {m['first_errors'][0]}")
    print("\n".join(lines))


def p_summaries(p, summary, peers, sluices):
    """The issue-style overview under the main table: tps and CPU per transaction against PgBouncer
    per client count (cells simple / extended / prepared), logins, and the connection phase of
    the largest client counts."""
    modes = [m for m in ("simple", "extended", "prepared") if any(k[0] == m for k in summary)]
    clients = sorted({k[1] for k in summary if k[0] in modes})
    if not modes or not clients:
        return
    poolers = [t for t in peers + sluices if any(k[2] == t for k in summary)]

    def cell(target, c, value):
        return " / ".join(value(summary.get((m, c, target)) or {}, summary.get((m, c, "pgbouncer")) or {})
                          for m in modes)

    cols = "".join(f" {c:,} |" for c in clients)
    p("")
    p(f"tps against PgBouncer ({' / '.join(modes)}; above 1 is faster):")
    p("")
    p("| target |" + cols)
    p("|---|" + "---:|" * len(clients))
    for t in poolers + ["direct"]:
        p(f"| {t} |" + "".join(f" {cell(t, c, lambda s, b: ratio(s.get('tps'), b.get('tps')))} |" for c in clients))
    p("")
    p(f"Pooler CPU per transaction, µs ({' / '.join(modes)}; all threads, user + system):")
    p("")
    p("| target |" + cols)
    p("|---|" + "---:|" * len(clients))
    for t in ["pgbouncer"] + poolers:
        p(f"| {t} |" + "".join(f" {cell(t, c, lambda s, b: fmt(s.get('cpu_ms_per_1k_tx'), 1))} |" for c in clients))
    p_cores(p, summary, modes, clients, poolers)
    logins = sorted({k[1] for k in summary if k[0] == "connect"})
    if logins:
        p("")
        p("Logins (`pgbench -C`, SCRAM, a new connection per transaction): logins per second, and "
          "against PgBouncer:")
        p("")
        p("| target |" + "".join(f" {c} clients | vs pgbouncer |" for c in logins))
        p("|---|" + "---:|---:|" * len(logins))
        for t in ["direct", "pgbouncer"] + poolers:
            row = ""
            for c in logins:
                s_, b = summary.get(("connect", c, t)) or {}, summary.get(("connect", c, "pgbouncer")) or {}
                row += f" {fmt(s_.get('tps'), 0)} | {ratio(s_.get('tps'), b.get('tps')) if t != 'pgbouncer' else ''} |"
            p(f"| {t} |" + row)
        # What a login costs the whole machine (pgbench's own SCRAM key derivation, 4,096 PBKDF2
        # rounds per connection, is in it), and the pooler's part of that.
        costs = []
        for t in ["direct", "pgbouncer"] + poolers:
            for c in logins:
                s_ = summary.get(("connect", c, t)) or {}
                m, a = s_.get("machine_cpu_ms_per_1k_tx"), s_.get("cpu_ms_per_1k_tx")
                if m:
                    costs.append(f"{t} {fmt(m, 0)} µs" + (f" (pooler {fmt(a, 0)} µs, {fmt(a / m * 100, 0)} %)" if a else ""))
        if costs:
            p("")
            p("CPU per login, all processes (busy cores over the window): " + "; ".join(costs) + ".")
            b = summary.get(("connect", logins[0], "pgbouncer")) or {}
            m, a = b.get("machine_cpu_ms_per_1k_tx"), b.get("cpu_ms_per_1k_tx")
            if m and a and m > a:
                p(f"A pooler whose logins cost nothing would reach {fmt(m / (m - a), 2)}x PgBouncer's logins "
                  "per second here, if the cores stay as busy.")
    big = [c for c in clients if c >= 256] or clients[-1:]
    p("")
    p("Connection phase (pgbench's `initial connection time`, all clients logging in with SCRAM at "
      "once, -j 2; median over modes and rounds, and the slowest run's time to its first "
      "transaction):")
    p("")
    p("| target |" + "".join(f" {c:,} clients s | slowest s |" for c in big))
    p("|---|" + "---:|---:|" * len(big))
    for t in ["direct", "pgbouncer"] + poolers:
        row = ""
        for c in big:
            ms = med([(summary.get((m, c, t)) or {}).get("connect_ms") for m in modes])
            worst = [(summary.get((m, c, t)) or {}).get("connect_phase_max_s") for m in modes]
            worst = [w for w in worst if w is not None]
            row += f" {fmt(ms / 1000 if ms is not None else None, 2)} | {fmt(max(worst) if worst else None, 2)} |"
        p(f"| {t} |" + row)


def p_cores(p, summary, modes, clients, poolers):
    """Where the machine's cores went per transaction, and what that allows: the pooler's share of
    all busy CPU time (pooler + PostgreSQL + pgbench + kernel, /proc/stat over the same window),
    what a pooler that cost nothing would reach against PgBouncer, and how little CPU per
    transaction a pooler would need to be 1.2x PgBouncer. Both assume the cores stay as busy as
    in PgBouncer's run and that the rest of the work per transaction stays what it was there:
    on a machine whose cores are all busy, tps = busy cores / CPU per transaction."""
    counts = [c for c in clients if c >= 16]
    if not counts or not any(s.get("machine_cpu_ms_per_1k_tx") for s in summary.values()):
        return

    def cell(target, c, value):
        return " / ".join(value(summary.get((m, c, target)) or {}, summary.get((m, c, "pgbouncer")) or {})
                          for m in modes)

    def share(s, _b):
        a, m = s.get("cpu_ms_per_1k_tx"), s.get("machine_cpu_ms_per_1k_tx")
        return fmt(a / m * 100, 0) if a and m else "-"

    def free(_s, b):
        a, m = b.get("cpu_ms_per_1k_tx"), b.get("machine_cpu_ms_per_1k_tx")
        return fmt(m / (m - a), 2) if a and m and m > a else "-"

    def needed(_s, b):
        a, m = b.get("cpu_ms_per_1k_tx"), b.get("machine_cpu_ms_per_1k_tx")
        if not (a and m):
            return "-"
        left = a - m * (1 - 1 / 1.2)
        return fmt(left, 1) if left > 0 else "none"

    cols = "".join(f" {c:,} |" for c in counts)
    p("")
    p(f"Where the cores went: the pooler's share of all busy CPU per transaction, % ({' / '.join(modes)}; "
      "the rest is PostgreSQL, pgbench and the kernel's work for them):")
    p("")
    p("| target |" + cols)
    p("|---|" + "---:|" * len(counts))
    for t in ["pgbouncer"] + poolers:
        p(f"| {t} |" + "".join(f" {cell(t, c, share)} |" for c in counts))
    p("")
    p("What that allows, from PgBouncer's run (same modes): tps of a pooler costing nothing against "
      "PgBouncer, and the CPU per transaction (µs) a pooler could spend and still be 1.2x PgBouncer "
      "(`none`: not even a pooler costing nothing would be):")
    p("")
    p("| |" + cols)
    p("|---|" + "---:|" * len(counts))
    p("| a pooler costing nothing |" + "".join(f" {cell('pgbouncer', c, free)} |" for c in counts))
    p("| CPU µs per tx left for 1.2x |" + "".join(f" {cell('pgbouncer', c, needed)} |" for c in counts))


# ---------------------------------------------------------------------------------------------
# callgrind.sh: instructions per transaction


def callgrind_total(path):
    """Instructions executed (event Ir) over a whole callgrind run, all threads: the `totals:`
    line (`summary:` in older formats) of its output file."""
    found = {}
    with open(path) as f:
        for line in f:
            for key in ("totals:", "summary:"):
                if line.startswith(key):
                    found[key] = int(line.split()[1])
    if not found:
        raise RuntimeError(f"no totals in {path}")
    return found.get("totals:", found.get("summary:"))


def cmd_cgreport(args):
    """One row per (mode, clients), one column per binary: (Ir of the run with more transactions -
    Ir of the run with fewer) / (the difference in transactions). Start-up, the clients' logins and
    shutdown are the same in both runs and cancel out. With --repeat, the median over the pairs
    and their spread."""
    records = load_jsonl(args.results)
    meta = json.load(open(args.meta)) if args.meta and os.path.exists(args.meta) else {}
    sluices = list(meta.get("sluices") or [])
    sluices += sorted({r["sluice"] for r in records} - set(sluices))
    pairs = {}  # (mode, clients, sluice) -> [Ir per tx of each repetition]
    runs = {}
    for r in records:
        runs.setdefault((r["mode"], r["clients"], r["sluice"], r["rep"]), []).append(r)
    for (mode, clients, name, _rep), rs in sorted(runs.items(), key=lambda kv: kv[0][3]):
        rs = sorted(rs, key=lambda r: r["tx"])
        if len(rs) < 2 or rs[-1]["tx"] == rs[0]["tx"]:
            continue
        per_tx = (rs[-1]["ir"] - rs[0]["ir"]) / (rs[-1]["tx"] - rs[0]["tx"])
        pairs.setdefault((mode, clients, name), []).append(per_tx)
    lines = []
    p = lines.append
    if meta:
        p(f"Instructions per transaction (callgrind) — {meta.get('date', '')}")
        p("")
        for k in ("postgres", "sluice", "settings"):
            if k in meta:
                p(f"- {k}: {meta[k]}")
        p("")
    base = sluices[0] if sluices else None
    reps = max((len(v) for v in pairs.values()), default=0)
    head = "| mode | clients |" + "".join(f" {n} |" for n in sluices)
    head += "".join(f" {n}/{base} |" for n in sluices[1:])
    if reps > 1:
        head += "".join(f" {n} spread % |" for n in sluices)
    p(head)
    p("|---|---:|" + "---:|" * (head.count("|") - 3))
    keys = sorted({(k[0], k[1]) for k in pairs},
                  key=lambda k: (MODE_ORDER.index(k[0]) if k[0] in MODE_ORDER else 99, k[1]))
    for mode, clients in keys:
        vals = {n: med(pairs.get((mode, clients, n), [])) for n in sluices}
        cells = [mode, str(clients)] + [f"{vals[n]:,.0f}" if vals[n] is not None else "-" for n in sluices]
        cells += [f"{vals[n] / vals[base]:.3f}" if vals[n] and vals[base] else "-" for n in sluices[1:]]
        if reps > 1:
            for n in sluices:
                v = pairs.get((mode, clients, n), [])
                cells.append(f"{(max(v) - min(v)) / med(v) * 100:.1f}" if len(v) > 1 and med(v) else "-")
        p("| " + " | ".join(cells) + " |")
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    sub.add_parser("freeport")

    r = sub.add_parser("run")
    r.add_argument("--label", required=True, help="JSON object merged into the record")
    r.add_argument("--pid", type=int, default=0, help="pooler pid whose CPU is sampled (0: none)")
    r.add_argument("--logdir", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--duration", type=int, required=True, help="seconds to measure, after connecting")
    r.add_argument("--state", required=True, help="JSON file remembering connection times")
    r.add_argument("--timeout", type=float, default=120, help="grace period past -T before a kill")
    r.add_argument("pgbench", nargs=argparse.REMAINDER)

    h = sub.add_parser("hold")
    h.add_argument("-n", type=int, required=True)
    h.add_argument("--host", default="127.0.0.1")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--user", required=True)
    h.add_argument("--password", default=os.environ.get("PGPASSWORD", ""))
    h.add_argument("--dbname", required=True)
    h.add_argument("--concurrency", type=int, default=64)
    h.add_argument("--connect-timeout", type=float, default=60)
    h.add_argument("--ready-file", required=True)
    h.add_argument("--tls", action="store_true", help="SSLRequest and TLS before the startup packet")
    h.add_argument("--query", default="",
                   help="run this simple query on each connection after login, before holding it idle")

    s = sub.add_parser("rss")
    s.add_argument("pid", type=int)

    rep = sub.add_parser("report")
    rep.add_argument("--results")
    rep.add_argument("--memory")
    rep.add_argument("--meta")

    cg = sub.add_parser("cgtotal")
    cg.add_argument("file")

    cgr = sub.add_parser("cgreport")
    cgr.add_argument("--results", required=True)
    cgr.add_argument("--meta")

    args = ap.parse_args()
    if args.cmd == "freeport":
        with socket.socket() as s_:
            s_.bind(("127.0.0.1", 0))
            print(s_.getsockname()[1])
    elif args.cmd == "run":
        if args.pgbench and args.pgbench[0] == "--":
            args.pgbench = args.pgbench[1:]
        cmd_run(args)
    elif args.cmd == "hold":
        cmd_hold(args)
    elif args.cmd == "rss":
        print(rss_kib(args.pid))
    elif args.cmd == "report":
        cmd_report(args)
    elif args.cmd == "cgtotal":
        print(callgrind_total(args.file))
    elif args.cmd == "cgreport":
        cmd_cgreport(args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
