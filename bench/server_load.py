#!/usr/bin/env python3
"""Bounded load test of `lean-diffusion serve` on this machine (loopback only).

Starts the server on a free port, sends REQUESTS txt2img requests from CLIENTS threads (each with its own seed),
and checks that every request is answered with 200 or 429, that each 200 carries the image of its own seed (none
lost, none duplicated or swapped), and that the server's counters agree. Prints p50/p95 latency of the 200s and
the server's RSS sampled through the run (it should stay flat).

    python3 bench/server_load.py [--binary .build/release/lean-diffusion] [--requests 60] [--clients 8]
                                 [--queue-size 4] [--steps 20] [--retry]
"""
import argparse
import base64
import json
import re
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request


def rss_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=".build/release/lean-diffusion")
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--queue-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--retry", action="store_true", help="clients retry a 429 after its Retry-After (at most 60 times)")
    ap.add_argument("--extra", default="", help="more serve options, e.g. '--dtype bf16'")
    args = ap.parse_args()

    server = subprocess.Popen([args.binary, "serve", "--port", "0", "--queue-size", str(args.queue_size)]
                              + args.extra.split(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    port = int(re.search(r":(\d+)$", line.strip()).group(1))
    base = f"http://127.0.0.1:{port}"

    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.time(), rss_kib(server.pid)))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample)
    sampler.start()

    lock = threading.Lock()
    next_index = [0]
    results = []  # (index, status, seconds, body)
    busy_answers = [0]  # 429s that were retried

    def client():
        while True:
            with lock:
                i = next_index[0]
                if i >= args.requests:
                    return
                next_index[0] += 1
            body = json.dumps({"prompt": f"a red circle on a blue background {i}", "seed": 1000 + i,
                               "steps": args.steps}).encode()
            req = urllib.request.Request(base + "/sdapi/v1/txt2img", data=body,
                                         headers={"Content-Type": "application/json"})
            t = time.time()
            for attempt in range(60 if args.retry else 1):
                try:
                    with urllib.request.urlopen(req, timeout=600) as r:
                        status, payload = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, payload = e.code, e.read()
                    if status == 429 and args.retry:
                        with lock:
                            busy_answers[0] += 1
                        time.sleep(float(e.headers.get("Retry-After", "1")))
                        continue
                break
            with lock:
                results.append((i, status, time.time() - t, payload))

    start = time.time()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.time() - start
    metrics = urllib.request.urlopen(base + "/metrics").read().decode()
    stop.set()
    sampler.join()
    peak = rss_kib(server.pid, "VmHWM")
    server.terminate()
    server.wait(timeout=60)

    ok = [r for r in results if r[1] == 200]
    busy = [r for r in results if r[1] == 429]
    other = [r for r in results if r[1] not in (200, 429)]
    seeds_ok = 0
    images = set()
    for i, _, _, payload in ok:
        d = json.loads(payload)
        info = json.loads(d["info"])
        if info["all_seeds"] == [1000 + i] and d["parameters"]["prompt"].endswith(f" {i}"):
            seeds_ok += 1
        images.add(base64.b64decode(d["images"][0]))
    done = int(re.search(r'lean_diffusion_jobs_total\{state="done"\} (\d+)', metrics).group(1))
    rejected = int(re.search(r"lean_diffusion_jobs_rejected_total (\d+)", metrics).group(1))
    lat = sorted(r[2] for r in ok)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    third = max(1, len(samples) // 3)
    rss_early = max(s[1] for s in samples[:third]) / 1024
    rss_late = max(s[1] for s in samples[-third:]) / 1024

    print(f"{args.requests} requests from {args.clients} clients, queue size {args.queue_size}, {args.steps} steps, "
          f"{wall:.1f} s wall")
    print(f"answered: {len(results)} ({len(ok)} x 200, {len(busy)} x 429, {len(other)} other)"
          + (f"; {busy_answers[0]} 429s retried after Retry-After" if args.retry else ""))
    print(f"200s with their own seed and prompt: {seeds_ok}/{len(ok)}; distinct images: {len(images)}")
    print(f"server counters: {done} done, {rejected} rejected")
    print(f"latency of 200s: p50 {p(0.5):.2f} s, p95 {p(0.95):.2f} s, mean {statistics.mean(lat):.2f} s" if lat else "no 200s")
    print(f"server RSS: max in first third {rss_early:.0f} MB, in last third {rss_late:.0f} MB, peak (VmHWM) {peak / 1024:.0f} MB")
    good = (len(results) == args.requests and not other and seeds_ok == len(ok) and len(images) == len(ok)
            and done == len(ok) and rejected == len(busy) + busy_answers[0])
    print("PASS" if good else "FAIL")
    raise SystemExit(0 if good else 1)


if __name__ == "__main__":
    main()
