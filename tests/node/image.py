#!/usr/bin/env python3
"""The project's container image, built from the Dockerfile without a container engine.

No registry or Docker daemon is needed: the Dockerfile's final stage is read instruction by
instruction and carried out here, on a Debian root made by mmdebstrap (tests/node/build.sh)
and the release binaries it COPYs from target/dist/$TARGETARCH (scripts/build-release.sh), with
TARGETARCH the architecture of this machine. An instruction
this script does not know is an error, so the Dockerfile cannot change behind its back.

  image.py plan  DOCKERFILE                       -> JSON: base release, packages RUN installs
  image.py build DOCKERFILE CONTEXT BASE.tar BIN_DIR OUT.tar NAME
  image.py check DOCKERFILE CONTEXT BIN_DIR OUT.tar NAME
  image.py pack  OUT.tar NAME ENTRYPOINT_JSON SRC:DST[:MODE]... [link:DST=TARGET]...

build writes a docker-archive (loadable with `ctr images import`): the base root as one layer,
the COPYed files as a second. check reads such an archive back and compares it with the
Dockerfile: entrypoint, user, labels, every COPY destination (content and mode), the packages
RUN installs, the Debian release, and that the binaries are static. pack makes a one-layer
image from loose files (the pause and busybox images of the test pods).
"""

import hashlib
import io
import json
import os
import re
import shlex
import sys
import tarfile

# The environment Debian's own images set.
DEBIAN_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


class Fail(Exception):
    pass


# ---------------------------------------------------------------- Dockerfile


def instructions(path):
    """(keyword, rest) for every instruction, continuation lines joined, comments dropped."""
    out, cur = [], ""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            s = line.rstrip("\n")
            if not cur and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if cur and s.lstrip().startswith("#"):
                continue
            if s.endswith("\\"):
                cur += s[:-1] + " "
                continue
            cur += s
            kw, _, rest = cur.strip().partition(" ")
            out.append((kw.upper(), rest.strip()))
            cur = ""
    if cur.strip():
        kw, _, rest = cur.strip().partition(" ")
        out.append((kw.upper(), rest.strip()))
    return out


def subst(text, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def flags(rest):
    """Leading --flag=value options of COPY/RUN, and the remaining words."""
    words = shlex.split(rest)
    opts = {}
    while words and words[0].startswith("--"):
        k, _, v = words.pop(0)[2:].partition("=")
        opts[k] = v
    return opts, words


def apt_packages(cmd):
    """Packages of the `apt-get install` in a RUN; every other command must be known."""
    pkgs = []
    for part in re.split(r"&&|;", cmd):
        w = shlex.split(part)
        if not w:
            continue
        while w and "=" in w[0] and not w[0].startswith("-"):
            w.pop(0)  # VAR=value prefixes (DEBIAN_FRONTEND=noninteractive)
        if w[:2] == ["apt-get", "update"]:
            continue
        if w[:2] == ["apt-get", "install"]:
            pkgs += [x for x in w[2:] if not x.startswith("-")]
            continue
        if w[:2] == ["rm", "-rf"] and all(x.startswith("/var/lib/apt/lists") for x in w[2:]):
            continue
        raise Fail(f"RUN {part.strip()!r}: not a step this builder knows (apt-get update/install, "
                   f"rm -rf /var/lib/apt/lists/*); teach tests/node/image.py")
    return pkgs


def plan(dockerfile):
    """What the final stage asks for."""
    # The platform arguments buildx predefines, for the platform of this machine.
    args = {"TARGETARCH": arch(), "TARGETOS": "linux", "TARGETPLATFORM": f"linux/{arch()}"}
    stage, stages = None, []
    for kw, rest in instructions(dockerfile):
        if kw == "FROM":
            words = subst(rest, args).split()
            stage = {"from": words[0], "name": words[2] if len(words) > 2 else None, "ins": []}
            stages.append(stage)
        elif stage is None:
            if kw != "ARG":
                raise Fail(f"{kw} before the first FROM")
            k, _, v = rest.partition("=")
            args[k] = v
        else:
            stage["ins"].append((kw, rest))
    if not stages:
        raise Fail("no FROM in the Dockerfile")
    final = stages[-1]
    m = re.fullmatch(r"(?:docker\.io/)?(?:library/)?debian:(\w+)-slim", final["from"])
    if not m:
        raise Fail(f"final stage FROM {final['from']}: only debian:<release>-slim is known here")
    p = {"release": m.group(1), "packages": [], "labels": {}, "copies": [], "user": "",
         "entrypoint": None, "cmd": None, "env": list(DEBIAN_ENV), "workdir": ""}
    for kw, rest in final["ins"]:
        if kw == "ARG":
            k, eq, v = rest.partition("=")
            if k not in args and eq:
                args[k] = v
            continue
        if kw == "LABEL":
            for w in shlex.split(rest):
                k, _, v = w.partition("=")
                p["labels"][k] = v
        elif kw == "RUN":
            p["packages"] += apt_packages(rest)
        elif kw == "COPY":
            opts, words = flags(subst(rest, args))
            unknown = set(opts) - {"from", "chmod"}
            if unknown or len(words) < 2:
                raise Fail(f"COPY {rest!r}: options {sorted(unknown)} or arguments not understood")
            *srcs, dest = words
            if len(srcs) > 1 and not dest.endswith("/"):
                raise Fail(f"COPY {rest!r}: several sources need a directory destination")
            for s in srcs:
                to = dest + os.path.basename(s) if dest.endswith("/") else dest
                mode = int(opts["chmod"], 8) if "chmod" in opts else None
                p["copies"].append({"from": opts.get("from"), "src": s, "dest": to, "mode": mode})
        elif kw == "USER":
            p["user"] = rest
        elif kw in ("ENTRYPOINT", "CMD"):
            try:
                p[kw.lower()] = json.loads(rest)
            except json.JSONDecodeError:
                raise Fail(f"{kw} {rest}: only the JSON (exec) form is supported") from None
        elif kw == "ENV":
            for w in shlex.split(rest):
                p["env"].append(w)
        elif kw == "WORKDIR":
            p["workdir"] = rest
        else:
            raise Fail(f"{kw} in the final stage: not an instruction this builder knows; teach tests/node/image.py")
    return p


def source_of(c, context, bin_dir):
    """Local file a COPY takes: the context, or the release binary for the builder's /out."""
    if c["from"] is None:
        return os.path.join(context, c["src"])
    if os.path.dirname(c["src"]) != "/out":
        raise Fail(f"COPY --from={c['from']} {c['src']}: only the builder's /out/<binary> is known")
    return os.path.join(bin_dir, os.path.basename(c["src"]))


# ---------------------------------------------------------------- docker-archive


def arch():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def tar_info(name, size=0, mode=0o644, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.type, ti.linkname, ti.mtime = size, mode, kind, link, 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def layer_of(entries):
    """A layer tar in memory from (path, bytes | None for a directory | 'link:T', mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        dirs = set()
        for path, _, _ in entries:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            t.addfile(tar_info(d, mode=0o755, kind=tarfile.DIRTYPE))
        for path, data, mode in entries:
            name = path.strip("/")
            if data is None:
                t.addfile(tar_info(name, mode=mode, kind=tarfile.DIRTYPE))
            elif isinstance(data, str):
                t.addfile(tar_info(name, mode=0o777, kind=tarfile.SYMTYPE, link=data[5:]))
            else:
                t.addfile(tar_info(name, len(data), mode), io.BytesIO(data))
    return buf.getvalue()


def write_archive(out, name, layers, config):
    """layers: list of (path of a tar file | bytes). Writes OUT atomically."""
    tmp = out + ".tmp"
    diff_ids, names = [], []
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        for layer in layers:
            h = hashlib.sha256()
            if isinstance(layer, bytes):
                h.update(layer)
                size, fobj = len(layer), io.BytesIO(layer)
            else:
                with open(layer, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
                size, fobj = os.path.getsize(layer), open(layer, "rb")
            d = h.hexdigest()
            fobj.seek(0)
            t.addfile(tar_info(f"{d}/layer.tar", size), fobj)
            fobj.close()
            diff_ids.append("sha256:" + d)
            names.append(f"{d}/layer.tar")
        config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        cfg = json.dumps(config, sort_keys=True).encode()
        c = hashlib.sha256(cfg).hexdigest()
        t.addfile(tar_info(c + ".json", len(cfg)), io.BytesIO(cfg))
        man = json.dumps([{"Config": c + ".json", "RepoTags": [name], "Layers": names}]).encode()
        t.addfile(tar_info("manifest.json", len(man)), io.BytesIO(man))
    os.replace(tmp, out)
    return "sha256:" + c


def base_config(entrypoint, cmd=None, user="", labels=None, env=None, workdir=""):
    cfg = {"Env": env or list(DEBIAN_ENV), "Entrypoint": entrypoint, "User": user,
           "Labels": labels or {}, "WorkingDir": workdir}
    if cmd is not None:
        cfg["Cmd"] = cmd
    return {"architecture": arch(), "os": "linux", "created": "1970-01-01T00:00:00Z",
            "config": cfg, "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/node/image.py"}]}


def build(dockerfile, context, base, bin_dir, out, name):
    p = plan(dockerfile)
    entries = []
    for c in p["copies"]:
        src = source_of(c, context, bin_dir)
        with open(src, "rb") as fh:
            data = fh.read()
        mode = c["mode"] if c["mode"] is not None else os.stat(src).st_mode & 0o7777
        entries.append((c["dest"], data, mode))
    config = base_config(p["entrypoint"], p["cmd"], p["user"], p["labels"], p["env"], p["workdir"])
    return write_archive(out, name, [base, layer_of(entries)], config)


# ---------------------------------------------------------------- check


def read_archive(path):
    """(config, RepoTags, {path: (TarInfo, bytes | None)}) with the layers applied in order."""
    files = {}
    with tarfile.open(path) as t:
        man = json.load(t.extractfile("manifest.json"))[0]
        config = json.load(t.extractfile(man["Config"]))
        for lname in man["Layers"]:
            with tarfile.open(fileobj=t.extractfile(lname)) as lt:
                for m in lt:
                    n = "/" + os.path.normpath(m.name).lstrip("./")
                    want = m.isfile() and (n.startswith("/usr/bin/") or n in (
                        "/etc/os-release", "/usr/lib/os-release", "/var/lib/dpkg/status"))
                    files[n] = (m, lt.extractfile(m).read() if want else None)
    return config, man.get("RepoTags", []), files


def resolve(files, path, depth=0):
    m = files.get(path, (None, None))[0]
    if m is not None and m.issym() and depth < 8:
        target = m.linkname if m.linkname.startswith("/") else os.path.join(os.path.dirname(path), m.linkname)
        return resolve(files, os.path.normpath(target), depth + 1)
    return path


def is_static(data):
    """An ELF file without a PT_INTERP program header (no dynamic loader)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        if int.from_bytes(data[phoff + i * phentsize:phoff + i * phentsize + 4], "little") == 3:
            return False
    return True


def check(dockerfile, context, bin_dir, archive, name):
    p = plan(dockerfile)
    config, tags, files = read_archive(archive)
    c = config.get("config", {})
    problems = []

    def want(what, got, exp):
        if got != exp:
            problems.append(f"{what}: image has {got!r}, Dockerfile says {exp!r}")

    want("RepoTags", tags, [name])
    want("Entrypoint", c.get("Entrypoint"), p["entrypoint"])
    want("Cmd", c.get("Cmd"), p["cmd"])
    want("User", c.get("User", ""), p["user"])
    want("Labels", c.get("Labels") or {}, p["labels"])
    want("Env", c.get("Env"), p["env"])
    want("architecture", config.get("architecture"), arch())
    for cp in p["copies"]:
        src = source_of(cp, context, bin_dir)
        entry = files.get(cp["dest"])
        if entry is None:
            problems.append(f"COPY {cp['src']} -> {cp['dest']}: not in the image")
            continue
        m, data = entry
        with open(src, "rb") as fh:
            if data != fh.read():
                problems.append(f"{cp['dest']}: differs from {src}")
        mode = cp["mode"] if cp["mode"] is not None else os.stat(src).st_mode & 0o7777
        want(f"{cp['dest']} mode", oct(m.mode & 0o7777), oct(mode))
        if (cp["from"] is not None or cp["src"].startswith("target/dist/")) and not is_static(data):
            problems.append(f"{cp['dest']}: not a static ELF binary")
    status = (files.get("/var/lib/dpkg/status", (None, b""))[1] or b"").decode()
    installed = set(re.findall(r"^Package: (\S+)\n(?:[^\n]+\n)*?Status: install ok installed$", status, re.M))
    for pkg in p["packages"]:
        if pkg not in installed:
            problems.append(f"package {pkg} (RUN apt-get install) is not installed in the image")
    osr = files.get(resolve(files, "/etc/os-release"), (None, b""))[1] or b""
    codename = re.search(rb"^VERSION_CODENAME=(\S+)$", osr, re.M)
    want("Debian release", codename.group(1).decode() if codename else None, p["release"])
    entry = (p["entrypoint"] or [""])[0]
    if entry and entry not in files:
        problems.append(f"ENTRYPOINT {entry} is not in the image")
    if problems:
        raise Fail("image does not match the Dockerfile:\n  " + "\n  ".join(problems))
    return len(p["copies"])


def pack(out, name, entrypoint, specs):
    entries = []
    for s in specs:
        if s.startswith("link:"):
            dst, _, target = s[5:].partition("=")
            entries.append((dst, "link:" + target, 0o777))
            continue
        parts = s.split(":")
        with open(parts[0], "rb") as fh:
            data = fh.read()
        entries.append((parts[1], data, int(parts[2], 8) if len(parts) > 2 else 0o755))
    for d in ("/tmp", "/proc", "/sys", "/dev", "/etc", "/run"):
        entries.append((d, None, 0o1777 if d == "/tmp" else 0o755))
    entries.append(("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644))
    entries.append(("/etc/group", b"root:x:0:\nnobody:x:65534:\n", 0o644))
    return write_archive(out, name, [layer_of(entries)], base_config(json.loads(entrypoint)))


def main(argv):
    try:
        if argv[:1] == ["plan"] and len(argv) == 2:
            print(json.dumps(plan(argv[1])))
        elif argv[:1] == ["build"] and len(argv) == 7:
            print(f"{argv[6]} {build(*argv[1:])}")
        elif argv[:1] == ["check"] and len(argv) == 6:
            n = check(*argv[1:])
            print(f"image {argv[5]} matches {argv[1]} ({n} COPYed files, entrypoint, user, labels, packages)")
        elif argv[:1] == ["pack"] and len(argv) >= 5:
            print(f"{argv[2]} {pack(argv[1], argv[2], argv[3], argv[4:])}")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Fail, OSError, KeyError, json.JSONDecodeError) as e:
        print(f"image.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
