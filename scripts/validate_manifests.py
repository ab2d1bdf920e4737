#!/usr/bin/env python3
"""Checks the deployment manifests and the config samples.

- Every Kubernetes object under deploy/ against the OpenAPI schema of one Kubernetes version
  (kubernetes-validate, strict: unknown fields are errors).
- NetworkAttachmentDefinitions (a CRD the schemas do not cover): apiVersion, kind, name,
  spec.config holding a JSON CNI config whose `sriov` fields follow docs/spec/cni.md, and a
  resourceName annotation naming a pool of the device-plugin ConfigMap (or, for DRA, a pod's
  resource claim).
- resource.k8s.io objects (deploy/dra/) against at least Kubernetes 1.34's schemas.
- The ConfigMap's config.json: strict JSON, keys as in docs/CONTRACT.md, equal to
  config-samples/ps225.json.
- Pods: extended resources they request and networks they attach exist.
- config-samples/: device-plugin configs and CNI netconfs, strict JSON, known keys.
- kustomizations: built with `kubectl kustomize` when kubectl is installed.

One line per file, then "N passed, M failed". Exit status 1 when anything failed.
Usage: validate_manifests.py [--kubernetes-version 1.33.0] [ROOT]
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - the shell wrapper installs it
    print("validate_manifests: the kubernetes-validate package is not installed", file=sys.stderr)
    sys.exit(2)


class Fail(Exception):
    pass


# ---------------------------------------------------------------- strict JSON


def _no_dups(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise Fail(f"duplicate JSON key {k!r}")
        seen[k] = v
    return seen


def _no_constants(name):
    raise Fail(f"{name} is not valid JSON")


def strict_json(text, what):
    try:
        return json.loads(text, object_pairs_hook=_no_dups, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise Fail(f"{what} is not valid JSON: {e}") from None


# ---------------------------------------------------------------- device-plugin config

DP_TOP = {"resourceList", "provision"}
DP_POOL = {
    "resourceName", "resourcePrefix", "deviceType", "excludeTopology", "selectors",
    "additionalInfo", "allocationPolicy",
}
DP_SELECTORS = {
    "vendors", "devices", "drivers", "pciAddresses", "pfNames", "rootDevices", "linkTypes",
    "isRdma", "needVhostNet", "acpiIndexes",
}
DP_PROVISION = {"pf", "numVfs", "vfDrivers", "linkUp"}
DP_VFDRIVER = {"vfs", "driver"}
PCI_ADDR = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
VF_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
HEX4 = re.compile(r"^[0-9a-fA-F]{4}$")
RES_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def unknown(keys, known, where):
    extra = sorted(set(keys) - known)
    if extra:
        raise Fail(f"unknown key(s) {', '.join(extra)} in {where} (known: {', '.join(sorted(known))})")


def check_dp_config(cfg, where, default_prefix="intel.com"):
    """Returns the set of full resource names the config defines."""
    if not isinstance(cfg, dict):
        raise Fail(f"{where}: top level must be an object")
    unknown(cfg, DP_TOP, where)
    pools = cfg.get("resourceList")
    if not isinstance(pools, list) or not pools:
        raise Fail(f"{where}: resourceList must be a non-empty list")
    names = set()
    for i, p in enumerate(pools):
        w = f"{where} resourceList[{i}]"
        if not isinstance(p, dict):
            raise Fail(f"{w} must be an object")
        unknown(p, DP_POOL, w)
        name = p.get("resourceName")
        if not isinstance(name, str) or not RES_NAME.match(name):
            raise Fail(f"{w}: resourceName missing or malformed")
        prefix = p.get("resourcePrefix", default_prefix)
        if not isinstance(prefix, str) or not DNS_SUBDOMAIN.match(prefix):
            raise Fail(f"{w}: resourcePrefix {prefix!r} is not a DNS subdomain")
        full = f"{prefix}/{name}"
        if full in names:
            raise Fail(f"{w}: pool {full} defined twice")
        names.add(full)
        if "allocationPolicy" in p and p["allocationPolicy"] not in ("packed", "spread"):
            raise Fail(f"{w}: allocationPolicy must be packed or spread")
        for k in ("excludeTopology",):
            if k in p and not isinstance(p[k], bool):
                raise Fail(f"{w}: {k} must be a boolean")
        sels = p.get("selectors", {})
        for j, s in enumerate(sels if isinstance(sels, list) else [sels]):
            ws = f"{w} selectors" + (f"[{j}]" if isinstance(sels, list) else "")
            if not isinstance(s, dict):
                raise Fail(f"{ws} must be an object")
            unknown(s, DP_SELECTORS, ws)
            for k, v in s.items():
                if k in ("isRdma", "needVhostNet"):
                    if not isinstance(v, bool):
                        raise Fail(f"{ws}: {k} must be a boolean")
                elif not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                    raise Fail(f"{ws}: {k} must be a list of strings")
            for k in ("vendors", "devices"):
                for x in s.get(k, []):
                    if not HEX4.match(x):
                        raise Fail(f"{ws}: {k} entry {x!r} is not 4 hex digits")
            for x in s.get("pciAddresses", []):
                if not PCI_ADDR.match(x):
                    raise Fail(f"{ws}: pciAddresses entry {x!r} is not a PCI address")
            for k in ("pfNames", "rootDevices"):
                for x in s.get(k, []):
                    base, _, rng = x.partition("#")
                    if not base or ("#" in x and not VF_LIST.match(rng)):
                        raise Fail(f"{ws}: {k} entry {x!r} is not NAME[#RANGES]")
                    if k == "rootDevices" and not PCI_ADDR.match(base):
                        raise Fail(f"{ws}: rootDevices entry {x!r} does not start with a PCI address")
    prov = cfg.get("provision", [])
    if not isinstance(prov, list):
        raise Fail(f"{where}: provision must be a list")
    for i, pr in enumerate(prov):
        w = f"{where} provision[{i}]"
        if not isinstance(pr, dict):
            raise Fail(f"{w} must be an object")
        unknown(pr, DP_PROVISION, w)
        if not isinstance(pr.get("pf"), str) or not pr["pf"]:
            raise Fail(f"{w}: pf (netdev name or PCI address) is required")
        n = pr.get("numVfs")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise Fail(f"{w}: numVfs must be a non-negative integer")
        if "linkUp" in pr and not isinstance(pr["linkUp"], bool):
            raise Fail(f"{w}: linkUp must be a boolean")
        claimed = set()
        for j, d in enumerate(pr.get("vfDrivers", [])):
            wd = f"{w} vfDrivers[{j}]"
            if not isinstance(d, dict):
                raise Fail(f"{wd} must be an object")
            unknown(d, DP_VFDRIVER, wd)
            vfs, drv = d.get("vfs"), d.get("driver")
            if not isinstance(vfs, str) or not VF_LIST.match(vfs):
                raise Fail(f"{wd}: vfs must be indexes and ranges like \"0-2,5\"")
            if not isinstance(drv, str) or not drv:
                raise Fail(f"{wd}: driver is required")
            for part in vfs.split(","):
                lo, _, hi = part.partition("-")
                lo, hi = int(lo), int(hi or lo)
                if hi < lo or hi >= n:
                    raise Fail(f"{wd}: VF range {part} outside 0..{n - 1}")
                for v in range(lo, hi + 1):
                    if v in claimed:
                        raise Fail(f"{wd}: VF {v} given two drivers")
                    claimed.add(v)
    return names


# ---------------------------------------------------------------- CNI netconf

CNI_VERSIONS = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}


def check_sriov_netconf(c, w):
    def intval(k, lo, hi=None):
        v = c[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
            raise Fail(f"{w}: {k} must be an integer in {lo}..{hi if hi is not None else 'inf'}")
        return v

    if "deviceID" in c and not (isinstance(c["deviceID"], str) and PCI_ADDR.match(c["deviceID"])):
        raise Fail(f"{w}: deviceID must be a PCI address dddd:bb:dd.f")
    vlan = intval("vlan", 0, 4094) if "vlan" in c else None
    if "vlanQoS" in c:
        q = intval("vlanQoS", 0, 7)
        if vlan is None:
            raise Fail(f"{w}: vlanQoS needs vlan")
        if q and not vlan:
            raise Fail(f"{w}: a non-zero vlanQoS needs a non-zero vlan")
    if "vlanProto" in c:
        p = c["vlanProto"]
        if not isinstance(p, str) or p.lower() not in ("802.1q", "802.1ad"):
            raise Fail(f"{w}: vlanProto must be 802.1q or 802.1ad")
        if p.lower() == "802.1ad" and not vlan:
            raise Fail(f"{w}: vlanProto 802.1ad needs a non-zero vlan")
    for k in ("spoofchk", "trust"):
        if k in c and c[k] not in ("on", "off"):
            raise Fail(f"{w}: {k} must be \"on\" or \"off\"")
    if "link_state" in c and c["link_state"] not in ("auto", "enable", "disable"):
        raise Fail(f"{w}: link_state must be auto, enable or disable")
    mn = intval("min_tx_rate", 0) if "min_tx_rate" in c else None
    mx = intval("max_tx_rate", 0) if "max_tx_rate" in c else None
    if mn is not None and mx and mn > mx:
        raise Fail(f"{w}: min_tx_rate exceeds max_tx_rate")
    if "mtu" in c:
        intval("mtu", 68, 65535)
    if "ipam" in c and not (isinstance(c["ipam"], dict) and isinstance(c["ipam"].get("type"), str)):
        raise Fail(f"{w}: ipam must be an object with a type")


def check_cni_config(c, w):
    """A network config or a conflist. Returns the list of plugin types."""
    if not isinstance(c, dict):
        raise Fail(f"{w}: must be a JSON object")
    if c.get("cniVersion") not in CNI_VERSIONS:
        raise Fail(f"{w}: cniVersion must be one of {', '.join(sorted(CNI_VERSIONS))}")
    if "name" in c and not isinstance(c["name"], str):
        raise Fail(f"{w}: name must be a string")
    plugins = c.get("plugins") if "plugins" in c else [c]
    if not isinstance(plugins, list) or not plugins:
        raise Fail(f"{w}: plugins must be a non-empty list")
    types = []
    for i, p in enumerate(plugins):
        wp = f"{w} plugins[{i}]" if "plugins" in c else w
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise Fail(f"{wp}: type is required")
        if p["type"] == "sriov":
            check_sriov_netconf(p, wp)
        types.append(p["type"])
    if "plugins" in c and types[0] != "sriov" and "sriov" in types:
        raise Fail(f"{w}: sriov must come first in the chain (it creates the interface)")
    return types


# ---------------------------------------------------------------- manifests


# resource.k8s.io/v1 (DRA, deploy/dra/) exists from Kubernetes 1.34 on: such objects are checked
# against that version's schemas when the chosen version is older.
DRA_MIN_VERSION = "1.34.0"


def _version_key(v):
    return tuple(int(x) for x in v.split("."))


def effective_version(doc, version):
    if str(doc.get("apiVersion", "")).startswith("resource.k8s.io/") and _version_key(version) < _version_key(DRA_MIN_VERSION):
        return DRA_MIN_VERSION
    return version


def check_k8s(doc, version):
    version = effective_version(doc, version)
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path) or "(top)"
        raise Fail(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {path}: {e.message}") from None
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        raise Fail(f"{doc.get('kind')}: no schema for Kubernetes {version}: {e}") from None


def check_nad(doc, pools, claims=frozenset()):
    w = f"NetworkAttachmentDefinition/{doc.get('metadata', {}).get('name')}"
    if doc.get("apiVersion") != "k8s.cni.cncf.io/v1":
        raise Fail(f"{w}: apiVersion must be k8s.cni.cncf.io/v1")
    unknown(doc, {"apiVersion", "kind", "metadata", "spec"}, w)
    name = doc.get("metadata", {}).get("name")
    if not isinstance(name, str) or not DNS_SUBDOMAIN.match(name) or len(name) > 253:
        raise Fail(f"{w}: metadata.name missing or not a DNS subdomain")
    spec = doc.get("spec") or {}
    unknown(spec, {"config"}, f"{w} spec")
    if not isinstance(spec.get("config"), str):
        raise Fail(f"{w}: spec.config must be a string holding JSON")
    conf = strict_json(spec["config"], f"{w} spec.config")
    types = check_cni_config(conf, f"{w} spec.config")
    if "name" in conf and conf["name"] != name:
        raise Fail(f"{w}: spec.config name {conf['name']!r} differs from metadata.name")
    res = doc.get("metadata", {}).get("annotations", {}).get("k8s.v1.cni.cncf.io/resourceName")
    if "sriov" in types:
        if not res:
            raise Fail(f"{w}: a sriov attachment needs the k8s.v1.cni.cncf.io/resourceName annotation")
        # With DRA the annotation names a ResourceClaim instead of a pool.
        if pools is not None and res not in pools and res not in claims:
            raise Fail(f"{w}: resourceName {res} is not a pool of the ConfigMap (pools: {', '.join(sorted(pools))})")
    return name


def _run(argv, env):
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


def check_launcher(path):
    """dpdk-launcher.sh against a fake sysfs and /dev: no root or DPDK needed."""
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        sysfs, dev = os.path.join(tmp, "sys"), os.path.join(tmp, "dev")
        os.makedirs(os.path.join(sysfs, "bus/pci/devices/0000:08:02.0"))
        os.makedirs(os.path.join(sysfs, "bus/pci/devices/0000:08:02.1"))
        os.makedirs(os.path.join(dev, "vfio"))
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SYSFS_ROOT": sysfs, "DEV_ROOT": dev}
        info = json.dumps({a: {"generic": {"deviceID": a}, "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": f"/dev/vfio/{g}"}}
                           for a, g in (("0000:08:02.0", 42), ("0000:08:02.1", 43))})
        env = dict(base, PCIDEVICE_ARM_COM_PS225_DPDK="0000:08:02.0,0000:08:02.1", PCIDEVICE_ARM_COM_PS225_DPDK_INFO=info)
        cases = [
            # (argv, env, expected rc, expected stdout or None)
            (["--resource", "arm.com/ps225_dpdk", "--print", "--no-check", "--", "dpdk-testpmd", "-l", "0-1", "--", "--auto-start"],
             env, 0, "dpdk-testpmd -l 0-1 -a 0000:08:02.0 -a 0000:08:02.1 -- --auto-start"),
            (["--print", "--no-check", "--", "app", "x y"], env, 0, "app 'x y' -a 0000:08:02.0 -a 0000:08:02.1"),
            (["--print", "--", "app"], env, 1, None),  # /dev/vfio/42 missing
            (["--print", "--", "app"], dict(base, PCIDEVICE_X="08:02.0"), 1, None),  # not a full address
            (["--resource", "intel.com/nothing", "--print", "--", "app"], env, 1, None),
            (["--print", "--", "app"], base, 1, None),  # no PCIDEVICE_* at all
            (["--device", "0000:08:02.1", "--print", "--", "app"], base, 0, "app -a 0000:08:02.1"),  # not vfio-bound
            (["--device", "0000:09:00.0", "--print", "--", "app"], base, 1, None),  # no such device
            (["--print"], env, 2, None),
        ]
        for argv, e, rc, want in cases:
            out = _run(["sh", path] + argv, e)
            n += 1
            if out.returncode != rc or (want is not None and out.stdout.strip() != want):
                raise Fail(f"dpdk-launcher.sh {' '.join(argv)}: rc {out.returncode} (want {rc}), "
                           f"stdout {out.stdout.strip()!r}, stderr {out.stderr.strip()!r}")
    return n


def check_install_cni(path):
    with tempfile.TemporaryDirectory() as tmp:
        src, dest = os.path.join(tmp, "sriov"), os.path.join(tmp, "bin")
        os.makedirs(dest)
        with open(src, "w") as fh:
            fh.write("binary")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_INSTALL_ONCE": "1"}
        for _ in range(2):  # installing over an existing binary too
            out = _run(["sh", path, src, dest], env)
            if out.returncode != 0:
                raise Fail(f"install-cni.sh: rc {out.returncode}: {out.stderr.strip()}")
        if sorted(os.listdir(dest)) != ["sriov"]:
            raise Fail(f"install-cni.sh left {sorted(os.listdir(dest))} in the destination")
        st = os.stat(os.path.join(dest, "sriov"))
        if st.st_mode & 0o777 != 0o755 or open(os.path.join(dest, "sriov")).read() != "binary":
            raise Fail("install-cni.sh: installed file has the wrong mode or content")
        if _run(["sh", path, src, os.path.join(tmp, "missing")], env).returncode == 0:
            raise Fail("install-cni.sh succeeded without a destination directory")
    return 3


def dp_prefix_from_daemonset(doc):
    for c in doc["spec"]["template"]["spec"].get("containers", []):
        for a in c.get("args", []):
            if a.startswith("--resource-prefix="):
                return a.split("=", 1)[1]
    return "intel.com"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubernetes-version", default=os.environ.get("K8S_VERSION", "1.33.0"))
    ap.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    version = args.kubernetes_version
    os.chdir(root)

    results = []  # (ok, file, detail)

    def record(path, fn):
        try:
            detail = fn()
            results.append((True, path, detail))
        except Fail as e:
            results.append((False, path, str(e)))
        except Exception as e:  # noqa: BLE001 - report anything as a failure of this file
            results.append((False, path, f"{type(e).__name__}: {e}"))

    # Load every YAML file under deploy/ first: pools and NADs are cross-checked.
    yaml_files = sorted(glob.glob("deploy/**/*.yaml", recursive=True) + glob.glob("deploy/**/*.yml", recursive=True))
    docs = {}
    for f in yaml_files:
        try:
            with open(f) as fh:
                docs[f] = [d for d in yaml.safe_load_all(fh) if d is not None]
        except yaml.YAMLError as e:
            docs[f] = e

    prefix = "intel.com"
    for f, ds in docs.items():
        if isinstance(ds, list):
            for d in ds:
                if isinstance(d, dict) and d.get("kind") == "DaemonSet" and d.get("metadata", {}).get("name") == "sriov-device-plugin":
                    prefix = dp_prefix_from_daemonset(d)

    pools = None
    pool_error = "no ConfigMap sriovdp-config under deploy/"
    for f, ds in docs.items():
        if isinstance(ds, list):
            for d in ds:
                if isinstance(d, dict) and d.get("kind") == "ConfigMap" and d.get("metadata", {}).get("name") == "sriovdp-config":
                    try:
                        cfg = strict_json(d.get("data", {}).get("config.json", ""), f"{f} data config.json")
                        pools = check_dp_config(cfg, f"{f} config.json", prefix)
                    except Fail as e:
                        pool_error = str(e)

    nad_names = set()
    for f, ds in docs.items():
        if isinstance(ds, list):
            for d in ds:
                if isinstance(d, dict) and d.get("kind") == "NetworkAttachmentDefinition":
                    nad_names.add(d.get("metadata", {}).get("name"))

    # ResourceClaim names (objects, and those pods name in spec.resourceClaims[].resourceClaimName):
    # what a DRA attachment's resourceName annotation names. Multus 4.3 keys DRA devices by the
    # ResourceClaim object's name (the kubelet's PodResources claim_name), not by the pod's
    # name for the claim nor by a template's.
    claim_names = set()
    for f, ds in docs.items():
        if isinstance(ds, list):
            for d in ds:
                if isinstance(d, dict) and d.get("kind") == "ResourceClaim":
                    claim_names.add((d.get("metadata") or {}).get("name"))
                if isinstance(d, dict) and d.get("kind") == "Pod":
                    for c in (d.get("spec") or {}).get("resourceClaims") or []:
                        if c.get("resourceClaimName"):
                            claim_names.add(c.get("resourceClaimName"))

    def check_yaml_file(f):
        ds = docs[f]
        if isinstance(ds, yaml.YAMLError):
            raise Fail(f"not valid YAML: {ds}")
        if not ds:
            raise Fail("no YAML document")
        notes = []
        for d in ds:
            if not isinstance(d, dict):
                raise Fail("a document is not a mapping")
            kind = d.get("kind")
            if kind in ("Kustomization", "Component"):
                notes.append(f"{kind} (built below)")
                continue
            if kind == "NetworkAttachmentDefinition":
                check_nad(d, pools, claim_names)
                notes.append(f"NetworkAttachmentDefinition/{d['metadata']['name']} (CRD checks)")
                continue
            check_k8s(d, version)
            name = d.get("metadata", {}).get("name")
            if kind == "ConfigMap" and name == "sriovdp-config":
                if pools is None:
                    raise Fail(pool_error)
                sample = "config-samples/ps225.json"
                if os.path.exists(sample):
                    with open(sample) as fh:
                        if strict_json(fh.read(), sample) != strict_json(d["data"]["config.json"], "config.json"):
                            raise Fail(f"config.json differs from {sample}")
                notes.append(f"ConfigMap/{name} [k8s {version} strict] (config.json pools: {', '.join(sorted(pools))})")
                continue
            if kind == "Pod":
                spec = d["spec"]
                for c in spec.get("containers", []) + spec.get("initContainers", []):
                    for sect in ("requests", "limits"):
                        for r in (c.get("resources", {}).get(sect) or {}):
                            if "/" in r and not r.startswith(("kubernetes.io/", "hugepages-")):
                                if pools is not None and r not in pools:
                                    raise Fail(f"Pod/{name}: resource {r} is not a pool of the ConfigMap")
                nets = d.get("metadata", {}).get("annotations", {}).get("k8s.v1.cni.cncf.io/networks")
                if nets:
                    for n in (x.strip().split("@")[0].split("/")[-1] for x in nets.split(",")):
                        if n not in nad_names:
                            raise Fail(f"Pod/{name}: network {n} has no NetworkAttachmentDefinition under deploy/")
            notes.append(f"{kind}/{name} [k8s {effective_version(d, version)} strict]")
        return ", ".join(notes)

    for f in yaml_files:
        record(f, lambda f=f: check_yaml_file(f))

    # Kustomizations build (kubectl ships kustomize).
    kubectl = shutil.which("kubectl")
    for k in sorted(glob.glob("deploy/**/kustomization.yaml", recursive=True)):
        d = os.path.dirname(k)
        with open(k) as fh:
            kdoc = yaml.safe_load(fh)
        if kdoc.get("kind") == "Component":
            continue

        def build(d=d):
            if not kubectl:
                return "kubectl not installed: build skipped"
            out = subprocess.run([kubectl, "kustomize", d], capture_output=True, text=True)
            if out.returncode != 0:
                raise Fail(f"kubectl kustomize {d}: {out.stderr.strip()}")
            objs = [x for x in yaml.safe_load_all(out.stdout) if x]
            for o in objs:
                if o.get("kind") != "NetworkAttachmentDefinition":
                    check_k8s(o, version)
            return f"kustomize build: {len(objs)} objects valid"

        record(f"{d}/ (kustomize)", build)

    # Every component, applied on top of deploy/.
    for comp in sorted(glob.glob("deploy/components/*/kustomization.yaml")):
        cdir = os.path.dirname(comp)

        def build_component(cdir=cdir):
            if not kubectl:
                return "kubectl not installed: build skipped"
            with tempfile.TemporaryDirectory() as tmp:
                with open(os.path.join(tmp, "kustomization.yaml"), "w") as fh:
                    rel = os.path.relpath(root, tmp)
                    fh.write(f"resources:\n  - {rel}/deploy\ncomponents:\n  - {rel}/{cdir}\n")
                out = subprocess.run([kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", tmp],
                                     capture_output=True, text=True)
            if out.returncode != 0:
                raise Fail(f"kubectl kustomize with {cdir}: {out.stderr.strip()}")
            objs = [x for x in yaml.safe_load_all(out.stdout) if x]
            for o in objs:
                check_k8s(o, version)
            return f"deploy/ + component: {len(objs)} objects valid"

        record(f"{cdir}/ (component)", build_component)

    # Shell scripts shipped in the image: syntax, then their behaviour where a check exists.
    behaviour = {"deploy/dpdk-launcher.sh": check_launcher, "deploy/install-cni.sh": check_install_cni}
    for sh in sorted(glob.glob("deploy/*.sh")):
        def syntax(sh=sh):
            out = subprocess.run(["sh", "-n", sh], capture_output=True, text=True)
            if out.returncode != 0:
                raise Fail(f"sh -n: {out.stderr.strip()}")
            if not os.access(sh, os.X_OK):
                raise Fail("not executable")
            if sh in behaviour:
                return f"POSIX sh syntax, {behaviour[sh](sh)} behaviour checks"
            return "POSIX sh syntax"
        record(sh, syntax)

    # Config samples.
    for f in sorted(glob.glob("config-samples/*.json") + glob.glob("config-samples/*.conflist")):
        def sample(f=f):
            with open(f) as fh:
                c = strict_json(fh.read(), f)
            if os.path.basename(f).startswith("cni-"):
                types = check_cni_config(c, f)
                return "CNI config: " + " -> ".join(types)
            names = check_dp_config(c, f)
            return "device-plugin config: " + ", ".join(sorted(names))
        record(f, sample)

    passed = sum(1 for ok, _, _ in results if ok)
    failed = len(results) - passed
    for ok, f, detail in results:
        print(f"{'PASS' if ok else 'FAIL'} {f}: {detail}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
