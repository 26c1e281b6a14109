"""Runs the PyPI conformance suite `scim2-tester` against a SCIM server.

The issue holds the SCIM simulator to it in the `strict-rfc` profile.
`cargo test` runs it (tests/scim_conformance.rs) with the Python named by
PORTCULLIS_SCIM2_PYTHON; `.ci/run` installs requirements.txt for it. By hand:

    python3 -m venv target/scim2-venv
    target/scim2-venv/bin/pip install -r crates/portcullis-sim/tests/conformance/requirements.txt
    cargo run -p portcullis -- sim scim --profile strict-rfc --port 12114 &
    target/scim2-venv/bin/python crates/portcullis-sim/tests/conformance/scim2_check.py \
        --url http://127.0.0.1:12114/scim/v2 --token scim-portcullis-token

It prints every check that did not succeed, then `passed/total`, and exits
non-zero if any check did not succeed. Written against the versions in
requirements.txt, whose network engine is httpx2.
"""

import argparse
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:12114/scim/v2")
    parser.add_argument("--token", default="scim-portcullis-token")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list the passing checks")
    args = parser.parse_args()

    http = httpx2.Client(base_url=args.url, headers={"Authorization": f"Bearer {args.token}"})
    client = SyncSCIMClient(http)
    client.discover()
    results = check_server(client, raise_exceptions=False)

    passed = 0
    failed = 0
    for result in results:
        ok = result.status in (Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE, Status.SKIPPED)
        passed += ok
        failed += result.status in (Status.ERROR, Status.CRITICAL)
        if args.verbose or not ok:
            where = f"[{result.resource_type}] " if result.resource_type else ""
            print(f"{result.status.name:10} {where}{result.title}: {result.reason}")
    print(f"{passed}/{len(results)} checks passed")
    return 0 if passed == len(results) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
