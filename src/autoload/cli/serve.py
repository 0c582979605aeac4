"""`autoload serve ROOT`: a folder of repos (or an HF cache) over the Hugging Face and ModelScope protocols
(docs/hub-server.md)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("serve", help="serve a folder of repos (or an HF cache) over the Hugging Face protocol")
    p.add_argument("root", help="folder of ORG/NAME repo folders, or a huggingface_hub cache folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", action="append", dest="tokens", help="accepted token (repeatable); default: no auth")
    p.add_argument("--follow-symlinks-outside", action="store_true",
                   help="serve files that symlinks in ROOT point to outside it (default: treated as absent)")
    p.add_argument("--public-url", help="base URL clients reach the server at, for absolute links (default: its own)")
    return p


def main(args) -> int:
    from ..server import HubServer
    srv = HubServer(args.root, host=args.host, port=args.port, tokens=args.tokens,
                    follow_symlinks_outside=args.follow_symlinks_outside, public_url=args.public_url)
    print(f"Serving {args.root} at {srv.url} (Ctrl-C to stop). Point clients at it with HF_ENDPOINT={srv.url}")
    try:
        srv.serve_forever()
    finally:
        srv.stop()
    return 0
