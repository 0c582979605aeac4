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
    p.add_argument("--writable", action="store_true",
                   help="accept uploads (create_repo, upload_file/folder, push_to_hub) from write tokens")
    p.add_argument("--write-token", action="append", dest="write_tokens", metavar="[USER=]TOKEN",
                   help="token allowed to upload (repeatable; USER owns repos created without a namespace)")
    p.add_argument("--max-upload-size", type=int, default=50 * 2**30, metavar="BYTES",
                   help="largest file accepted (default 50 GiB); a commit's inline body is capped at 1 GiB")
    p.add_argument("--inline-size", type=int, default=0, metavar="BYTES",
                   help="files up to this size go inline in the commit, never LFS: huggingface_hub with Xet on "
                        "(no HF_HUB_DISABLE_XET=1) can then push them (default 0: off)")
    return p


def main(args) -> int:
    from ..server import HubServer
    write_tokens = {}
    for value in args.write_tokens or []:
        user, _, token = value.rpartition("=")
        write_tokens[token] = user or "user"
    srv = HubServer(args.root, host=args.host, port=args.port, tokens=args.tokens,
                    follow_symlinks_outside=args.follow_symlinks_outside, public_url=args.public_url,
                    writable=args.writable, write_tokens=write_tokens, max_file_size=args.max_upload_size,
                    inline_size=args.inline_size)
    mode = " (writable)" if args.writable else ""
    print(f"Serving {args.root}{mode} at {srv.url} (Ctrl-C to stop). Point clients at it with HF_ENDPOINT={srv.url}",
          flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.stop()
    return 0
