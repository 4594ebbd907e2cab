"""``musiclm serve`` (the web studio and HTTP API) and ``musiclm listen ...`` (listening tests).

Picked up by :func:`musiclm.cli._extensions`. Heavy imports (FastAPI, uvicorn, torch) happen in the handlers.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Any

from musiclm.cli import add_device_flag, add_json_flag, emit
from musiclm.errors import MusicLMError

DATA_ENV = "MUSICLM_STUDIO_DIR"
log = logging.getLogger(__name__)


class ServeError(MusicLMError):
    """The server cannot start (no model, a bad option)."""


def default_data_dir() -> Path:
    """``$MUSICLM_STUDIO_DIR``, else ``$XDG_DATA_HOME/musiclm/studio`` (``~/.local/share/musiclm/studio``)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "musiclm" / "studio"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_model(model_dir: str | None, device: str, random_size: str | None = None) -> Any:
    """The model to serve: a folder (``--model``, ``$MUSICLM_MODEL`` or the bundled one) or a random one."""
    from musiclm.pipeline import MODEL_ENV, MusicLM

    if random_size is not None:
        from musiclm.random_model import random_musiclm

        log.warning("serving a RANDOMLY INITIALISED %s model: its audio is noise (for development only)", random_size)
        model = random_musiclm(random_size, seed=0).to(device)
        model.source = f"random {random_size} model (untrained: noise)"
        return model
    try:
        return MusicLM.from_pretrained(model_dir, device=device)
    except MusicLMError as exc:
        where = model_dir or os.environ.get(MODEL_ENV) or "the bundled model"
        raise ServeError(f"cannot load the model to serve ({where}): {exc}. Pass --model DIR (a folder holding "
                         f"codec/, mulan/, semantic/, lm-semantic/, lm-coarse/ and lm-fine/) or set ${MODEL_ENV}; "
                         "to try the studio without a trained model use --random-model tiny") from None


def build_settings(args: argparse.Namespace) -> Any:
    from musiclm.server.app import LOCAL_HOSTS, ServerSettings
    from musiclm.server.requests import Limits

    if args.workers < 1 or args.queue < 1:
        raise ServeError("--workers and --queue must be >= 1")
    allowed: tuple[str, ...] | None
    if is_loopback(args.host):
        allowed = (*LOCAL_HOSTS, *(args.allow_host or []))
    else:
        allowed = tuple(args.allow_host) if args.allow_host else None
    try:
        limits = Limits(max_duration=args.max_duration, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                        max_melody_seconds=args.max_melody_seconds)
    except MusicLMError as exc:
        raise ServeError(str(exc)) from None
    return ServerSettings(data_dir=Path(args.data_dir), workers=args.workers, max_queue=args.queue, limits=limits,
                          results_max_bytes=int(args.results_max_gb * 1024**3),
                          results_max_age_hours=args.results_max_age_hours, allowed_hosts=allowed)


def _cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from musiclm.server.app import create_app
    from musiclm.train.command import set_threads

    settings = build_settings(args)
    if not is_loopback(args.host):
        log.warning("listening on %s: anyone who can reach this address can use the studio (no authentication)",
                    args.host)
    set_threads(args)
    model = load_model(args.model, args.device, args.random_model)
    app = create_app(model, settings)
    print(f"musiclm studio: http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port}/ "
          f"(model: {getattr(model, 'source', None) or 'random ' + str(args.random_model)}, data: {settings.data_dir})",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                timeout_graceful_shutdown=5)


# --------------------------------------------------------------------------------------------- listen
def _store(args: argparse.Namespace) -> Any:
    from musiclm.server.listening import ListeningStore

    return ListeningStore(Path(args.data_dir) / "listening")


def _system_specs(specs: list[str]) -> dict[str, str]:
    systems: dict[str, str] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise MusicLMError(f"--system takes NAME=FOLDER, got {spec!r}")
        if name.strip() in systems:
            raise MusicLMError(f"system {name.strip()!r} is given twice")
        systems[name.strip()] = folder.strip()
    return systems


def _cmd_listen_create(args: argparse.Namespace) -> None:
    from musiclm.server.listening import read_prompts

    prompts = read_prompts(args.prompts)
    result = _store(args).create_test(args.name, prompts, _system_specs(args.system), args.description or "")
    emit(result, args, lambda r: f"created listening test {r['name']!r}: {r['prompts']} prompts x "
                                 f"{len(r['systems'])} systems ({r['pairs']} pairs per rater); "
                                 f"rate at /listen?test={r['name']}")


def _cmd_listen_list(args: argparse.Namespace) -> None:
    tests = _store(args).tests()
    emit(tests, args, lambda ts: "\n".join(f"{t['name']}: {t['prompts']} prompts, {t['systems']} systems, "
                                           f"{t['ratings']} ratings from {t['raters']} raters" for t in ts)
         or "no listening tests yet")


def _cmd_listen_results(args: argparse.Namespace) -> None:
    result = _store(args).results(args.name)

    def human(r: dict[str, Any]) -> str:
        lines = [f"{r['test']}: {r['ratings']} ratings from {r['raters']} raters",
                 f"{'system':24s} {'wins':>5s} {'losses':>6s} {'ties':>5s} {'win rate':>8s}"]
        for s in r["systems"]:
            rate = "-" if s["win_rate"] is None else f"{s['win_rate']:.3f}"
            lines.append(f"{s['system']:24s} {s['wins']:5d} {s['losses']:6d} {s['ties']:5d} {rate:>8s}")
        lines.append("pairwise (Wilcoxon signed-rank, two-sided, ties dropped):")
        for p in r["pairs"]:
            pval = "-" if p["p_value"] is None else f"{p['p_value']:.4g}"
            lines.append(f"  {p['system_x']} vs {p['system_y']}: n={p['n']} {p['x_wins']}-{p['y_wins']} "
                         f"(ties {p['ties']}), mean preference {p['mean_preference_x']}, p={pval}")
        return "\n".join(lines)

    emit(result, args, human)


def _cmd_listen_export(args: argparse.Namespace) -> None:
    from musiclm.fileio import atomic_write_text

    text = _store(args).export_csv(args.name)
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return
    atomic_write_text(args.output, text)
    print(f"wrote {text.count(chr(10)) - 1} ratings to {args.output}", file=sys.stderr)


def _cmd_listen_render(args: argparse.Namespace) -> None:
    from musiclm.audio import save_audio
    from musiclm.generate_cli import sampling_from_args
    from musiclm.server.listening import read_prompts
    from musiclm.train.command import set_threads

    prompts = read_prompts(args.prompts)
    set_threads(args)
    model = load_model(args.model, args.device)
    sampling = sampling_from_args(args)
    out = Path(args.out)
    written = []
    for index, item in enumerate(prompts):
        path = out / f"{item.key}.wav"
        if path.exists() and not args.overwrite:
            continue
        audio, rate = model.generate([item.caption], args.duration, seed=args.seed + index, **sampling)
        save_audio(path, audio[0].numpy(), rate)
        written.append(str(path))
        print(f"[{index + 1}/{len(prompts)}] {path}", file=sys.stderr)
    emit({"out": str(out), "written": len(written), "prompts": len(prompts)}, args)


def register(subparsers: Any) -> None:
    """Add ``musiclm serve`` and ``musiclm listen`` to the main parser."""
    from musiclm.generate_cli import add_sampling_arguments
    from musiclm.pipeline import MODEL_ENV

    data_help = f"where results and listening tests live (default: ${DATA_ENV} or ~/.local/share/musiclm/studio)"
    serve = subparsers.add_parser("serve", help="the web studio and HTTP API (generate, listen, compare, rate)",
                                  description="Serve the studio page at / and the API under /api (schema at "
                                              "/openapi.json). Binds to localhost unless --host says otherwise.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", help=f"model folder (default: ${MODEL_ENV} or the bundled model)")
    serve.add_argument("--random-model", choices=["tiny", "small"],
                       help="serve a randomly initialised model instead (development: its audio is noise)")
    serve.add_argument("--workers", type=int, default=1, help="generations run at the same time (threads)")
    serve.add_argument("--queue", type=int, default=16, help="jobs that may wait; beyond that: 429 (default 16)")
    serve.add_argument("--data-dir", default=str(default_data_dir()), help=data_help)
    serve.add_argument("--max-duration", type=float, default=60.0, help="longest audio one request may ask for (s)")
    serve.add_argument("--max-upload-mb", type=float, default=10.0, help="largest melody upload (MiB)")
    serve.add_argument("--max-melody-seconds", type=float, default=60.0, help="longest melody upload (s)")
    serve.add_argument("--results-max-gb", type=float, default=2.0, help="disk cap of kept results (GiB)")
    serve.add_argument("--results-max-age-hours", type=float, default=168.0, help="results expire after (hours)")
    serve.add_argument("--allow-host", action="append", metavar="HOST",
                       help="also accept this Host header (e.g. a LAN name when binding 0.0.0.0)")
    serve.add_argument("--threads", type=int, help="CPU threads for torch")
    serve.add_argument("--quiet", action="store_true", help="log warnings only")
    add_device_flag(serve)
    serve.set_defaults(handler=_cmd_serve)

    listen = subparsers.add_parser("listen", help="listening tests: A-vs-B ratings of systems on a prompt set")
    listen_sub = listen.add_subparsers(dest="listen_command", metavar="ACTION", required=True)

    def with_data(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--data-dir", default=str(default_data_dir()), help=data_help)
        add_json_flag(parser)
        return parser

    create = with_data(listen_sub.add_parser(
        "create", help="register a test: a prompt set and one folder of clips per system",
        description="Each system folder holds KEY.wav (or .flac/.ogg/.mp3) for every prompt KEY. Prompt files: "
                    "JSON lines with id and caption, or text lines 'KEY<TAB>caption' (or just the caption, keyed "
                    "1, 2, ...). The clips are copied into the data folder."))
    create.add_argument("--name", required=True, help="the test's name")
    create.add_argument("--prompts", required=True, help="the prompt file")
    create.add_argument("--system", action="append", required=True, metavar="NAME=FOLDER",
                        help="a system and its folder of clips (two or more)")
    create.add_argument("--description", help="shown with the test")
    create.set_defaults(handler=_cmd_listen_create)

    listing = with_data(listen_sub.add_parser("list", help="the tests and how many ratings each has"))
    listing.set_defaults(handler=_cmd_listen_list)

    results = with_data(listen_sub.add_parser("results", help="wins per system and pairwise Wilcoxon tests"))
    results.add_argument("--name", required=True)
    results.set_defaults(handler=_cmd_listen_results)

    export = with_data(listen_sub.add_parser("export", help="write a test's ratings as CSV"))
    export.add_argument("--name", required=True)
    export.add_argument("-o", "--output", help="CSV file (default: stdout)")
    export.set_defaults(handler=_cmd_listen_export)

    render = listen_sub.add_parser("render", help="generate one clip per prompt (KEY.wav) for a system folder")
    render.add_argument("--prompts", required=True, help="the prompt file")
    render.add_argument("--out", required=True, help="folder to write KEY.wav into")
    render.add_argument("--model", help=f"model folder (default: ${MODEL_ENV} or the bundled model)")
    render.add_argument("-d", "--duration", type=float, default=10.0)
    render.add_argument("--seed", type=int, default=0, help="seed of the first prompt (then +1 per prompt)")
    add_sampling_arguments(render)
    render.add_argument("--overwrite", action="store_true", help="regenerate clips that exist")
    render.add_argument("--threads", type=int, help="CPU threads for torch")
    add_device_flag(render)
    add_json_flag(render)
    render.set_defaults(handler=_cmd_listen_render)
