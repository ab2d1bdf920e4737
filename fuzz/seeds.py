#!/usr/bin/env python3
"""Write the fuzz targets' seed inputs into CORPUS_DIR/<target>/seed-*.

Configs come from the repository (config-samples/, the deploy/ ConfigMap and
NetworkAttachmentDefinitions), so new samples seed the fuzzers without a change here; the
rest is a handful of hand-made inputs. Seeds are rewritten on every run; what the fuzzers
find is kept beside them.
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

try:
    import yaml
except ImportError:  # the YAML-embedded configs are a bonus, not a requirement
    yaml = None


def yaml_docs(path):
    if yaml is None:
        return []
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]


def json_samples():
    """(name, parsed JSON) of every JSON config in the repository."""
    for p in sorted((ROOT / "config-samples").glob("*.json")) + sorted(
        (ROOT / "config-samples").glob("*.conflist")
    ):
        yield p.name, json.loads(p.read_text())
    for p in sorted((ROOT / "deploy").rglob("*.yaml")):
        for d in yaml_docs(p):
            data = d.get("data") or {}
            for k, v in data.items():
                if k.endswith(".json"):
                    yield f"{p.stem}-{k}", json.loads(v)
            config = (d.get("spec") or {}).get("config")
            if isinstance(config, str):
                yield f"{p.stem}-config", json.loads(config)


def dp_configs():
    for name, v in json_samples():
        if isinstance(v, dict) and "resourceList" in v:
            yield name, json.dumps(v, indent=1).encode()


def netconfs():
    for name, v in json_samples():
        if not isinstance(v, dict):
            continue
        if "plugins" in v:
            # What libcni hands each plugin of a list: the plugin's object with the list's
            # version and name.
            for i, p in enumerate(v["plugins"]):
                if p.get("type") == "sriov":
                    conf = dict(p, cniVersion=v.get("cniVersion"), name=v.get("name"))
                    yield f"{name}-{i}", conf
        elif v.get("type") == "sriov":
            yield name, v


def cni_inputs():
    for name, conf in netconfs():
        yield name, json.dumps(conf).encode()
        rc = dict(conf, runtimeConfig={"deviceID": "0000:03:10.1", "mac": "02:00:00:00:00:01"})
        yield name + "-runtime", b"IgnoreUnknown=1;MAC=02:00:00:00:00:02\0" + json.dumps(rc).encode()
        prev = dict(conf, deviceID="0000:03:10.2", prevResult={"cniVersion": conf.get("cniVersion"), "interfaces": [{"name": "net1"}]})
        yield name + "-prev", json.dumps(prev).encode()


def ranges():
    seeds = ["0", "0-3,6", "4095", " 1 - 2 , 7", "ens1f0#0-3,6", "0000:03:00.0#0-3", "enp8s0f0np0#8-15"]
    for _, v in json_samples():
        for pool in (v.get("resourceList") or []) if isinstance(v, dict) else []:
            sels = pool.get("selectors") or []
            for s in sels if isinstance(sels, list) else [sels]:
                for key in ("pfNames", "rootDevices"):
                    seeds += [x for x in s.get(key, []) if isinstance(x, str)]
        for p in (v.get("provision") or []) if isinstance(v, dict) else []:
            seeds += [d["vfs"] for d in p.get("vfDrivers", []) if isinstance(d.get("vfs"), str)]
    for i, s in enumerate(dict.fromkeys(seeds)):
        yield str(i), s.encode()


def pci_addresses():
    for i, s in enumerate(["0000:03:00.0", "0000:0A:1f.7", "ffff:ff:1f.7", "14e4", "0x8086", "0000:03:00.0#0-3"]):
        yield str(i), s.encode()


# ---- HTTP/2 ----

def frame(kind, flags, stream, payload):
    n = len(payload)
    return bytes([n >> 16 & 255, n >> 8 & 255, n & 255, kind, flags]) + stream.to_bytes(4, "big") + payload


def hint(v, prefix, first=0):
    mx = (1 << prefix) - 1
    if v < mx:
        return bytes([first | v])
    out = [first | mx]
    v -= mx
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    out.append(v)
    return bytes(out)


def literal(n, v, first=0x00, prefix=4):
    return hint(0, prefix, first) + hint(len(n), 7) + n + hint(len(v), 7) + v


def request(authority, indexing=False):
    first, prefix = (0x40, 6) if indexing else (0x00, 4)
    b = b""
    for n, v in [(b":method", b"POST"), (b":scheme", b"http"),
                 (b":path", b"/pluginregistration.Registration/GetInfo"),
                 (b":authority", authority), (b"content-type", b"application/grpc"),
                 (b"te", b"trailers")]:
        b += literal(n, v, first, prefix)
    return b


def authority_inputs():
    sock = b"%2Fvar%2Flib%2Fkubelet%2Fplugins_registry%2Fx.sock"
    data = frame(0, 1, 1, b"\0\0\0\0\0")
    # Option byte: bit 0 has the target prepend the preface and a SETTINGS frame.
    yield "plain", bytes([1]) + frame(1, 4, 1, request(sock)) + data
    yield "indexed", bytes([3]) + frame(1, 4, 1, request(sock, True)) + data + frame(1, 5, 3, bytes(range(0xbe, 0xc4)))
    blk = request(b"localhost")
    yield "continuation", bytes([5]) + frame(1, 0, 1, blk[:20]) + frame(9, 0, 1, blk[20:40]) + frame(9, 4, 1, blk[40:]) + data
    yield "padded-priority", bytes([7]) + frame(1, 0x2c, 1, b"\x03" + b"\0\0\0\0\x10" + blk + b"\0\0\0") + data
    yield "size-update", bytes([9]) + frame(1, 4, 1, hint(4096, 5, 0x20) + blk) + frame(1, 4, 3, hint(0, 5, 0x20) + blk)
    # RFC 7541 C.4: requests with Huffman coding and the dynamic table.
    c4 = ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
          "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]
    yield "rfc7541-c4", bytes([11]) + b"".join(frame(1, 5, 1 + 2 * i, bytes.fromhex(h)) for i, h in enumerate(c4))
    yield "ping-settings", bytes([1]) + frame(6, 0, 0, b"12345678") + frame(4, 1, 0, b"") + frame(8, 0, 0, b"\0\0\1\0")
    big = literal(b"x-big", b"a" * 4000, 0x40, 6)
    yield "table-refs", bytes([13]) + frame(1, 5, 1, big + b"\xbe\xbe")
    yield "raw-preface", bytes([0]) + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 5, 1, blk)
    # Past the limits: a block over 16 KiB in CONTINUATION frames, and too many of them.
    yield "over-block", bytes([1]) + frame(1, 0, 1, blk) + frame(9, 0, 1, b"a" * 16384) + frame(9, 4, 1, b"a" * 100)
    yield "continuations", bytes([1]) + frame(1, 0, 1, blk[:10]) + b"".join(frame(9, 0, 1, b"") for _ in range(6)) + frame(9, 4, 1, blk[10:])
    yield "server-wrote", bytes([0x11]) + frame(1, 4, 1, b"\x80")
    yield "server-mid-frame", bytes([0x31]) + frame(9, 4, 1, blk)


TARGETS = {
    "pci_address": pci_addresses,
    "vf_range": ranges,
    "dp_config": dp_configs,
    "cni_netconf": cni_inputs,
    "authority": authority_inputs,
}


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus")
    for target, gen in TARGETS.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        n = 0
        for name, data in gen():
            (d / f"seed-{name}").write_bytes(data)
            n += 1
        print(f"{target}: {n} seeds in {d}")


if __name__ == "__main__":
    main()
