"""The ``callbridge`` command (also ``python -m engine``).

Subcommands: ``check``, ``diagram``, ``replay`` (protocol designers); ``conformance`` (the
lifecycle suite on one spec, for integrators); ``serve`` (the bridge server) and ``call`` (a
simulated phone call against it).
Every failure prints one located line per problem and exits non-zero; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from engine.errors import CallbridgeError, SpecErrors
from engine.language.loader import SpecSet


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _cmd_check(args: argparse.Namespace) -> int:
    from engine.language.loader import check_paths, default_spec_root

    root = Path(args.specs) if args.specs else default_spec_root()
    paths = [Path(p) for p in args.paths] or [root]
    errors, count = check_paths(paths, root)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(
            f"callbridge check: {_plural(len(errors), 'error')} in {_plural(count, 'file')}",
            file=sys.stderr,
        )
        return 1
    print(f"callbridge check: {count} file{'s' if count != 1 else ''} OK")
    return 0


def _load(args: argparse.Namespace) -> SpecSet:
    from engine.language.loader import load_specs

    return load_specs(Path(args.specs) if args.specs else None)


def _cmd_diagram(args: argparse.Namespace) -> int:
    from engine import diagram

    specs = _load(args)
    fmt = args.format
    if fmt == "svg":
        text = diagram.svg(specs.protocol)
        if text is None:
            print(
                "callbridge diagram: Graphviz `dot` is not installed; printing Mermaid instead "
                "(install graphviz for SVG)",
                file=sys.stderr,
            )
            text = diagram.mermaid(specs.protocol)
    elif fmt == "dot":
        text = diagram.dot(specs.protocol)
    elif fmt == "table":
        text = "".join(f"### {name} leg\n\n{diagram.policy_table(leg)}\n" for name, leg in specs.protocol.legs.items())
    else:
        text = diagram.mermaid(specs.protocol)
    if args.out:
        Path(args.out).write_text(text)
        print(f"callbridge diagram: wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from engine.core.commands import Notice
    from engine.replay import describe_command, read_transcript, replay, step_json

    specs = _load(args)
    entries = read_transcript(Path(args.file))
    violations = 0
    for step in replay(specs, args.provider, entries, ai=args.ai):
        violations += sum(1 for a in step.actions if isinstance(a, Notice) and a.code.startswith("violation."))
        if args.json:
            sys.stdout.write(orjson.dumps(step_json(step)).decode() + "\n")
            continue
        moved = [
            f"{leg} {a}→{b}"
            for leg, a, b in zip(("telephony", "ai"), step.states_before, step.states_after, strict=True)
            if a != b
        ]
        print(f"#{step.index:<4} t={step.t:8.3f}s {step.leg:<9} {step.summary}")
        if moved:
            print(f"      state: {'; '.join(moved)}")
        for action in step.actions:
            print(f"      {describe_command(action)}")
    if not args.json:
        print(f"replay: {violations} violation{'s' if violations != 1 else ''}")
    return 0


def _cmd_conformance(args: argparse.Namespace) -> int:
    from engine.conformance import check_files

    reports = check_files(args.paths, _load(args), partner=args.partner)
    print("\n\n".join(report.text() for report in reports))
    return 0 if all(report.ok for report in reports) else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from engine.io.server import serve_main

    return serve_main(args)


def _worker_count(text: str) -> int:
    from engine.io.workers import MAX_WORKERS

    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_WORKERS}, not {count}")
    return count


def _cmd_call(args: argparse.Namespace) -> int:
    from engine.io.callsim import call_main

    return call_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callbridge", description="Bridge telephone calls to AI voice agents.")
    parser.add_argument(
        "--specs", help="spec folder (default: $CALLBRIDGE_SPECS, ./specs of a checkout, or the bundled specs)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate specs; every error with file:line:col")
    check.add_argument("paths", nargs="*", help="spec files or folders (default: the whole spec folder)")
    check.set_defaults(func=_cmd_check)

    diagram = sub.add_parser("diagram", help="draw protocol.yaml (Mermaid; SVG with Graphviz)")
    diagram.add_argument("--format", choices=("mermaid", "svg", "dot", "table"), default="mermaid")
    diagram.add_argument("--out", help="write to this file instead of stdout")
    diagram.set_defaults(func=_cmd_diagram)

    rep = sub.add_parser("replay", help="run a recorded transcript through the engine")
    rep.add_argument("--provider", required=True, help="telephony provider spec name (e.g. twilio)")
    rep.add_argument("--ai", default="default", help="AI provider spec name (default: default)")
    rep.add_argument("--json", action="store_true", help="one JSON object per step")
    rep.add_argument("file", help="transcript, JSON Lines")
    rep.set_defaults(func=_cmd_replay)

    conf = sub.add_parser(
        "conformance", help="run the lifecycle suite on a platform or AI provider spec; PASS/FAIL per checklist line"
    )
    conf.add_argument("paths", nargs="+", help="spec files (providers/*.yaml or ai_providers/*.yaml)")
    conf.add_argument(
        "--partner",
        help="the other side the kit plays: an AI spec for a platform (default: default), "
        "a platform spec for an AI spec (default: twilio)",
    )
    conf.set_defaults(func=_cmd_conformance)

    serve = sub.add_parser("serve", help="run the bridge server")
    serve.add_argument("--config", help="config file (YAML)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=None,
        help="worker processes sharing the port with SO_REUSEPORT (default: the config's workers, else 1)",
    )
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve wss:// (with --tls-key; overrides listen.tls)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    serve.set_defaults(func=_cmd_serve)

    call = sub.add_parser("call", help="a simulated phone call against a running server")
    call.add_argument("--provider", required=True, help="platform spec to speak (e.g. twilio)")
    call.add_argument("--audio", help="16-bit WAV the caller plays (default: a speech-like signal)")
    call.add_argument("--seconds", type=float, default=3.0, help="test signal length (default 3)")
    call.add_argument("--out", help="write the audio that came back to this WAV")
    call.add_argument("--dtmf", default="", help="keys to press after the audio, e.g. 12#")
    call.add_argument(
        "--transcript",
        help="recorded platform transcript (JSON Lines) whose handshake/start/media messages to replay as examples",
    )
    call.add_argument("--tail", type=float, default=1.0, help="seconds of silence before hanging up (default 1)")
    call.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE",
        help="an upgrade header, as the platform sends its credential (repeatable), e.g. 'Authorization: Bearer T'",
    )
    call.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a custom parameter in the platform's start (Twilio <Parameter>), e.g. caller_id=+919701966915",
    )
    call.add_argument("--twilio-token", help="sign the upgrade as Twilio does (X-Twilio-Signature) with this token")
    call.add_argument("--cafile", help="for wss://: trust this CA certificate (PEM) instead of the system's")
    call.add_argument(
        "url",
        nargs="?",
        help="server URL (default: ws://127.0.0.1:8765/ws-adapter/"
        "PROVIDER/inbound/1/1/+14155550100?caller_id=+14155550123)",
    )
    call.set_defaults(func=_cmd_call)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except SpecErrors as exc:
        print(exc, file=sys.stderr)
        return 1
    except CallbridgeError as exc:
        print(f"callbridge {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
