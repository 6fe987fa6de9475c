"""Reference matcher for sigil-vuln-bench: the same SBOM against the same OSV records, in
Python with `packaging` (PyPA's PEP 440 implementation, what pip uses). ECOSYSTEM ranges with
`introduced`, `fixed` and `last_affected` events and `versions` lists: the subset the
benchmark's records use. Prints the number of findings and the seconds taken (loading the
records excluded, as it is for Sigil's in-process figure)."""
import json
import sys
import time
import zipfile

from packaging.version import Version


def affected(ranges, versions, v):
    if str(v) in versions:
        return True
    for r in ranges:
        events = sorted(
            r["events"],
            key=lambda e: Version("0") if e.get("introduced") == "0" else Version(next(iter(e.values()))),
        )
        inside = False
        for e in events:
            if "introduced" in e:
                if e["introduced"] == "0" or v >= Version(e["introduced"]):
                    inside = True
            elif "fixed" in e and v >= Version(e["fixed"]):
                inside = False
            elif "last_affected" in e and v > Version(e["last_affected"]):
                inside = False
        if inside:
            return True
    return False


def main():
    archive, sbom_path = sys.argv[1], sys.argv[2]
    by_package = {}
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            record = json.loads(z.read(name))
            for a in record.get("affected", []):
                by_package.setdefault(a["package"]["name"].lower(), []).append((record["id"], a))
    sbom = json.load(open(sbom_path))
    start = time.perf_counter()
    findings = 0
    for c in sbom["components"]:
        v = Version(c["version"])
        for _id, a in by_package.get(c["name"].lower(), []):
            if affected(a.get("ranges", []), set(a.get("versions", [])), v):
                findings += 1
    print(json.dumps({"findings": findings, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
