"""Command line: serve, validate manifests, probe health, mint dev tokens.

Exit codes: 0 success, 1 the check failed (invalid manifests, unhealthy,
refused to start), 2 bad configuration or usage. The server stack (uvicorn,
the app) and httpx are imported only by the commands that use them, so quick
commands such as ``health`` in a container HEALTHCHECK start fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from . import __version__
from .auth import issue_token_from_settings
from .constants import DEFAULT_PORT, MANIFEST_FILE, MODULE_NAME, POLICY_FILE
from .errors import StartupError
from .logs import configure_logging
from .manifest import ManifestError, load_manifests
from .settings import Settings

app = typer.Typer(name=MODULE_NAME, help="Run and check this BLUX module.", no_args_is_help=True)
manifest_app = typer.Typer(help="Module manifest and doctrine policy.", no_args_is_help=True)
token_app = typer.Typer(help="Development JWTs.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")
audit_app = typer.Typer(help="The local audit trail.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _settings(**overrides: object) -> Settings:
    """Settings from the environment, CLI flags winning; bad values exit 2 with reasons."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        ]
        _fail("invalid configuration:\n" + "\n".join(lines), 2)
    except ValueError as exc:  # e.g. an unreadable CONFIG_FILE
        _fail(f"invalid configuration: {exc}", 2)


# Upper bound on waiting for open HTTP requests at shutdown.
HTTP_DRAIN_SECONDS = 5


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default: PORT)")] = None,
) -> None:
    """Run the HTTP service until interrupted (SIGINT/SIGTERM drain gracefully)."""
    import uvicorn

    from .api import create_app
    from .core import ModuleCore
    from .server import DrainingServer

    settings = _settings(host=host, port=port)
    try:
        # The lifespan checks all this again; doing it here first turns a
        # refusal into one readable message instead of a server traceback.
        ModuleCore.from_settings(settings)
    except StartupError as exc:
        _fail(f"refusing to start: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level=settings.log_level.lower(),
        log_config=None,  # configure_logging above: one JSON handler for every logger
        access_log=settings.access_log,
        # On SIGTERM, DrainingServer first gives running tasks
        # SHUTDOWN_GRACE_SECONDS while still answering probes and task reads;
        # then open requests (which only queue or read tasks) get this short
        # drain. The sum must stay inside the orchestrator's kill deadline
        # (Kubernetes: terminationGracePeriodSeconds).
        timeout_graceful_shutdown=HTTP_DRAIN_SECONDS,
        server_header=False,
    )
    server = DrainingServer(config, application)
    server.run()
    if not server.started:
        # The lifespan refused to start (its reason is logged above).
        raise typer.Exit(1)


@manifest_app.command("validate")
def validate(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Directory holding the manifests (default: MANIFEST_DIR)"),
    ] = None,
) -> None:
    """Check both manifests against their schemas and each other."""
    target = directory if directory is not None else _settings().manifest_dir
    try:
        loaded = load_manifests(target)
    except ManifestError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        _fail(f"INVALID: {len(exc.problems)} problem(s) in {target}")
    typer.echo(
        f"OK: {target / MANIFEST_FILE} and {POLICY_FILE} are valid "
        f"({loaded.manifest.name} {loaded.manifest.version})"
    )


@app.command()
def health(
    url: Annotated[str | None, typer.Option(help="Health URL")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 3.0,
) -> None:
    """Exit 0 if /health answers 200 (for container HEALTHCHECKs; no curl needed)."""
    import httpx

    if url is None:
        try:
            port = Settings().port
        except (ValidationError, ValueError):
            port = DEFAULT_PORT
        url = f"http://127.0.0.1:{port}/health"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        _fail(f"unhealthy: {url}: {type(exc).__name__}: {exc}")
    try:
        typer.echo(json.dumps(response.json(), sort_keys=True))
    except ValueError:
        typer.echo(response.text)
    if response.status_code != 200:
        _fail(f"unhealthy: {url} answered {response.status_code}")


@token_app.command("issue")
def issue(
    subject: Annotated[str, typer.Option(help="The token's sub claim")],
    ttl: Annotated[int, typer.Option(min=1, help="Lifetime in seconds")] = 3600,
) -> None:
    """Print a JWT signed with the configured secret (for development and tests)."""
    settings = _settings()
    try:
        typer.echo(issue_token_from_settings(settings, subject, ttl))
    except StartupError as exc:
        _fail(str(exc), 2)


@audit_app.command("verify")
def audit_verify(
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Audit file to check (default: DATA_DIR/audit.jsonl)"),
    ] = None,
) -> None:
    """Check the hash chain; exit 1 naming the first broken record."""
    from .audit import verify_chain
    from .forwarding import load_cursor

    if file is None:
        settings = _settings()
        file, cursor_file = settings.audit_file, settings.audit_cursor_file
    else:
        cursor_file = file.with_suffix(".forwarded")
    if not file.is_file():
        _fail(f"no audit file at {file}")
    # What blux-guard confirmed (when records are forwarded) must still be in the file.
    cursor = load_cursor(cursor_file)
    confirmed = None if cursor is None else {"index": cursor.index, "hash": cursor.hash}
    report = verify_chain(file, confirmed)
    if report.broken_at is not None:
        _fail(
            f"{file}: chain broken at record {report.broken_at} "
            f"(line {report.broken_at + 1}): {report.problem}"
        )
    typer.echo(f"{report.records} records, chain intact")


@app.command()
def version() -> None:
    """Print the module name and version."""
    typer.echo(f"{MODULE_NAME} {__version__}")
