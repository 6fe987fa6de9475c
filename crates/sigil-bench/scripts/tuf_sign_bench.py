"""python-tuf's repository side as the reference for sigil-update-bench: build a targets
document of N targets, sign it (Ed25519), serialise it compactly; print the median seconds
of ROUNDS runs.

usage: tuf_sign_bench.py N ROUNDS
"""

import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer


def once(n, signer):
    started = time.perf_counter()
    targets = Targets(version=2, expires=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=90))
    for i in range(n):
        path = f"{i}.0.0/fw.bin"
        digest = format(i, "064x")
        targets.targets[path] = TargetFile(length=1_000_000 + i, hashes={"sha256": digest}, path=path,
                                           unrecognized_fields={"custom": {"version": f"{i}.0.0"}})
    metadata = Metadata(targets)
    metadata.sign(signer)
    data = metadata.to_bytes(JSONSerializer(compact=True))
    return time.perf_counter() - started, len(data)


def main():
    n, rounds = int(sys.argv[1]), int(sys.argv[2])
    signer = CryptoSigner(Ed25519PrivateKey.generate())
    runs = [once(n, signer) for _ in range(rounds)]
    print(f"{statistics.median(r[0] for r in runs):.6f} {runs[0][1]}")


if __name__ == "__main__":
    main()
