#!/usr/bin/env python3
"""stripe-webhook-ips.py [SOURCE] [-o OUTPUT] [--date YYYY-MM-DD]: turn Stripe's published list of
webhook source addresses into the nginx include nginx/stripe-webhook-ips.conf (`allow` lines, then
`deny all`), used when nginx is rendered with NGINX_STRIPE_WEBHOOK_IPS=1.

SOURCE is a file in the format of https://stripe.com/files/ips/ips_webhooks.json
(`{"WEBHOOKS": ["3.18.12.63", …]}`) or an https URL; by default that URL is fetched. Run it by
hand (it needs the internet), read the diff, commit it; CI never fetches. Stripe announces changes
seven days ahead on its api-announce list. Standard library only."""

import argparse
import datetime
import ipaddress
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

DEFAULT_SOURCE = "https://stripe.com/files/ips/ips_webhooks.json"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "nginx" / "stripe-webhook-ips.conf"


def load(source: str) -> dict:
    if source.startswith("https://"):
        with urllib.request.urlopen(source, timeout=30) as response:
            return json.load(response)
    if "://" in source:
        raise ValueError(f"{source}: only https URLs or files")
    return json.loads(Path(source).read_text())


def addresses(document) -> list:
    """The WEBHOOKS entries as networks (a single address is a /32 or /128), sorted, no duplicates."""
    entries = document.get("WEBHOOKS") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError('expected {"WEBHOOKS": [address, …]} with at least one address')
    networks = set()
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"not an address: {entry!r}")
        networks.add(ipaddress.ip_network(entry.strip(), strict=True))  # ValueError names the entry
    return sorted(networks, key=lambda n: (n.version, n.network_address, n.prefixlen))


def render(networks, source: str, date: str) -> str:
    lines = [
        "# Stripe's webhook source addresses: the only clients nginx admits to the two webhook",
        "# locations when rendered with NGINX_STRIPE_WEBHOOK_IPS=1 (everyone else gets the JSON 403).",
        f"# Source: {source}, as of {date} ({len(networks)} entries).",
        "# Written by scripts/stripe-webhook-ips.py; refresh it with that script rather than by hand.",
    ]
    lines += [f"allow {n.network_address if n.num_addresses == 1 else n};" for n in networks]
    lines.append("deny all;")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default=DEFAULT_SOURCE)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--date", default=datetime.datetime.now(datetime.timezone.utc).date().isoformat())
    args = parser.parse_args(argv)
    try:
        text = render(addresses(load(args.source)), args.source, args.date)
    except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        print(f"stripe-webhook-ips: {error}", file=sys.stderr)
        return 1
    # Replace the file whole or not at all.
    handle, temporary = tempfile.mkstemp(dir=args.output.parent, prefix=".stripe-webhook-ips.")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, args.output)
    print(f"wrote {args.output}: {text.count('allow ')} addresses", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
