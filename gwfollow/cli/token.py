"""Make a bearer token and the sha256 digest to put in the configuration."""

from __future__ import annotations

import argparse

EXAMPLE = """example:
  gwfollow token
      token:  3q2p...   (give it to the client; it is not stored anywhere)
      sha256: 9f86...   (put it in service.write_tokens_sha256 or read_tokens_sha256)"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--digest-of", metavar="TOKEN", help="print the digest of an existing token instead")


def main(args: argparse.Namespace) -> int:
    from gwfollow.service.auth import new_token, token_digest

    if args.digest_of:
        print(token_digest(args.digest_of))
        return 0
    tok = new_token()
    print(f"token:  {tok}")
    print(f"sha256: {token_digest(tok)}")
    return 0
