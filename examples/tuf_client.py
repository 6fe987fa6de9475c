"""An independent TUF client (python-tuf's ngclient, from PyPI) against a Sigil repository.

usage: tuf_client.py METADATA_URL TARGETS_URL CA_FILE METADATA_DIR TARGET_NAME OUT_DIR

METADATA_DIR must hold the trusted root.json. Prints the downloaded file's path and exits 0,
or prints the error's class and message and exits 1.
"""

import ssl
import sys
import urllib.error
import urllib.request

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface


class CaFetcher(FetcherInterface):
    """Fetches over HTTPS trusting only the given CA (Sigil's root)."""

    def __init__(self, cafile):
        self.context = ssl.create_default_context(cafile=cafile)

    def _fetch(self, url):
        try:
            response = urllib.request.urlopen(url, context=self.context, timeout=30)
        except urllib.error.HTTPError as e:
            raise DownloadHTTPError(str(e), e.code) from e
        return iter(lambda: response.read(65536), b"")


def main():
    metadata_url, targets_url, cafile, metadata_dir, target, out_dir = sys.argv[1:7]
    updater = Updater(
        metadata_dir=metadata_dir,
        metadata_base_url=metadata_url,
        target_dir=out_dir,
        target_base_url=targets_url,
        fetcher=CaFetcher(cafile),
        # The trusted root is METADATA_DIR/root.json (a device keeps it there).
        bootstrap=None,
    )
    try:
        updater.refresh()
        info = updater.get_targetinfo(target)
        if info is None:
            print(f"NoTarget: {target} is not in the repository")
            return 1
        print(updater.download_target(info))
        return 0
    except Exception as e:  # the test reads the class name
        print(f"{type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
