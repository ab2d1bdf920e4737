#!/usr/bin/env python3
"""Interleaved CNI ADD/CHECK/DEL timing of several plugins on real VFs (lab scenario 80).

usage: peers-cni.py ROUNDS LABEL=BIN:CONF ...   (each CONF a netconf file for that plugin's VF)

Each round runs ADD, CHECK (ADD's result as prevResult) and DEL of every plugin in turn, into
the pod netns named by $PEERS_POD. Wall time is spawn to reaped, CPU the child's user+system
time from wait4. One untimed round first. Prints one table row per plugin.
"""
import json
import os
import sys
import time


def timed(bin_path, cmd, conf, cid):
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": "/run/netns/" + os.environ["PEERS_POD"],
        "CNI_IFNAME": "net1",
        "CNI_PATH": "/usr/lib/cni",
        "SRIOV_CNI_STATE_DIR": os.environ.get("CNI_STATE", "/run/lab-cni"),
    }
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    body = json.dumps(conf).encode()
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(r_in, 0)
        os.dup2(w_out, 1)
        devnull = os.open("/dev/null", os.O_WRONLY)
        os.dup2(devnull, 2)
        for fd in (r_in, w_in, r_out, w_out):
            os.close(fd)
        os.execve(bin_path, [bin_path], env)
    os.close(r_in)
    os.close(w_out)
    os.write(w_in, body)
    os.close(w_in)
    chunks = []
    while True:
        b = os.read(r_out, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r_out)
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t
    out = b"".join(chunks).decode(errors="replace")
    ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    if not ok:
        sys.exit(f"{bin_path} {cmd} failed: {out}")
    return out, wall * 1e3, (ru.ru_utime + ru.ru_stime) * 1e3


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main():
    rounds = int(sys.argv[1])
    plugins = []
    for spec in sys.argv[2:]:
        label, rest = spec.split("=", 1)
        bin_path, conf_file = rest.split(":", 1)
        with open(conf_file) as f:
            plugins.append((label, bin_path, json.load(f)))
    wall = {p[0]: {"ADD": [], "CHECK": [], "DEL": [], "A+D": []} for p in plugins}
    cpu = {p[0]: {"ADD": [], "CHECK": [], "DEL": [], "A+D": []} for p in plugins}
    for r in range(rounds + 1):
        for i, (label, bin_path, conf) in enumerate(plugins):
            cid = f"peers-{i}"
            add, aw, ac = timed(bin_path, "ADD", conf, cid)
            full = dict(conf, prevResult=json.loads(add))
            _, cw, cc = timed(bin_path, "CHECK", full, cid)
            _, dw, dc = timed(bin_path, "DEL", full, cid)
            if r == 0:
                continue
            for k, w, c in (("ADD", aw, ac), ("CHECK", cw, cc), ("DEL", dw, dc),
                            ("A+D", aw + dw, ac + dc)):
                wall[label][k].append(w)
                cpu[label][k].append(c)
    ref = plugins[-1][0]
    ours = plugins[0][0]
    print(f"{'plugin':<34} {'ADD p50/p95 ms':>16} {'CHECK p50':>10} {'DEL p50/p95':>14} "
          f"{'ADD+DEL p50/p95':>16} {'vs ' + ref:>16} {'CPU ADD+DEL p50/p95':>20} {'ours/this CPU':>14}")
    for label, _, _ in plugins:
        w, c = wall[label], cpu[label]
        print(f"{label:<34} {pct(w['ADD'], 50):7.2f}/{pct(w['ADD'], 95):7.2f} "
              f"{pct(w['CHECK'], 50):10.2f} {pct(w['DEL'], 50):6.2f}/{pct(w['DEL'], 95):7.2f} "
              f"{pct(w['A+D'], 50):7.2f}/{pct(w['A+D'], 95):8.2f} "
              f"{pct(w['A+D'], 50) / pct(wall[ref]['A+D'], 50):15.2f}x "
              f"{pct(c['A+D'], 50):9.2f}/{pct(c['A+D'], 95):9.2f} "
              f"{pct(cpu[ours]['A+D'], 50) / pct(c['A+D'], 50):13.2f}x")
    print(f"({rounds} rounds, interleaved, after one untimed round)")


if __name__ == "__main__":
    main()
