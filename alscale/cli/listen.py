"""``alscale listen``: receive Label Studio annotation webhooks into the workspace."""

from __future__ import annotations

import ipaddress
import logging

import click

from alscale._signals import sigterm_as_interrupt

__all__ = ["command"]


@click.command("listen")
@click.option("--workspace", "-w", required=True, type=click.Path(file_okay=False), help="The active-learning workspace.")
@click.option("--url", required=True, help="Label Studio base URL (for the reconcile pull and --register).")
@click.option("--project", required=True, type=int, help="Label Studio project id.")
@click.option("--token-env", default="LABEL_STUDIO_API_KEY", show_default=True, help="Env variable holding the Label Studio token.")
@click.option("--secret-env", default="ALSCALE_WEBHOOK_SECRET", show_default=True, help="Env variable holding the shared webhook secret.")
@click.option("--header", default="X-Alscale-Secret", show_default=True, help="Header that carries the secret.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0: every interface, for a Label Studio on another machine).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on (0: any free one).")
@click.option("--reconcile-every", default=300.0, show_default=True, type=float, help="Seconds between reconcile pulls (0: start only).")
@click.option("--next-round-after", type=int,
              help="Run --on-next-round after this many new labels (ids labeled for the first time; skips and edits do not count).")
@click.option("--on-next-round", help="Shell command to run (gets ALSCALE_NEW_LABELS).")
@click.option("--register/--no-register", default=False,
              help="Register this receiver as the project's webhook first; one this run created is removed again on Ctrl-C or SIGTERM.")
@click.option("--register-only", is_flag=True, help="Register the webhook and exit.")
@click.option("--public-url", help="URL Label Studio should call (needed with --host 0.0.0.0) [http://HOST:PORT/webhook].")
def command(workspace, url, project, token_env, secret_env, header, host, port, reconcile_every, next_round_after, on_next_round,
            register, register_only, public_url):
    """Write each ANNOTATION_CREATED / ANNOTATION_UPDATED webhook into the workspace.

    The secret is read from $ALSCALE_WEBHOOK_SECRET (see --secret-env) and must arrive in the
    X-Alscale-Secret header; requests without it get 401.  Every annotation is pulled at start
    and every --reconcile-every seconds, so a webhook missed while this was down costs nothing.
    With --register, a webhook this run created is removed when it stops (Ctrl-C, SIGTERM); one it
    found for the same URL is kept.  Each webhook is logged: recorded, ignored or refused, and why.

      alscale listen -w ws --url http://127.0.0.1:8080 --project 3 --register
    """
    from alscale.queues import LabelStudioConnector, WebhookListener
    from alscale.queues._http import secret_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the one line per webhook
    if (register or register_only) and not public_url and _unspecified(host):
        # Label Studio cannot call http://0.0.0.0/...: the webhook would never arrive
        raise click.UsageError(f"--register with --host {host} (every interface) needs --public-url, the URL Label Studio "
                               "calls (e.g. http://THIS-HOST:PORT/webhook).")
    if register_only and port == 0 and not public_url:
        raise click.UsageError("--register-only needs the port Label Studio will call: expected --port 1-65535 or "
                               "--public-url. Got --port 0 (any free port, known only to a running listener).")
    if reconcile_every and not 1 <= reconcile_every < float("inf"):  # said as the flag, not as the Python parameter
        raise click.BadParameter(f"expected 0 (a pull at start only) or at least 1 second. Got {reconcile_every:g}.",
                                 param_hint="'--reconcile-every'")
    secret = secret_from_env(secret_env, what="webhook secret")
    connector = LabelStudioConnector(url, project, token_env=token_env)
    if register_only:
        from alscale.loop.workspace import Workspace

        Workspace.open(workspace)  # what a start checks before a webhook points here: the workspace,
        connector.choices_control()  # and the project's one <Choices> control that answers are read from
        _register(connector, public_url or f"http://{host}:{port}/webhook", secret, header)
        return
    # bind first: a port already taken fails here, before a webhook points at it
    listener = WebhookListener(workspace, secret=secret, connector=connector, host=host, port=port, header=header,
                               reconcile_every=reconcile_every or None, next_round_after=next_round_after, on_next_round=on_next_round)
    created = None
    with sigterm_as_interrupt():  # SIGTERM stops as cleanly as Ctrl-C
        try:
            if register:
                hook_id, is_new = _register(connector, public_url or listener.url, secret, header)
                created = hook_id if is_new else None
            # said once the start's checks (the project, the first reconcile pull) went well, not before they fail
            listener.serve_forever(on_start=lambda: click.echo(f"listening on {listener.url} (workspace {workspace})", err=True))
        finally:
            if created is not None:  # a webhook found and reused stays; one made for this run's URL goes with it
                _unregister(connector, created)


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        return False


def _register(connector, hook_url: str, secret: str, header: str) -> tuple[int, bool]:
    hook_id, created = connector.ensure_webhook(hook_url, secret=secret, header=header)
    if created:
        click.echo(f"registered webhook {hook_id} -> {hook_url} in project {connector.project}")
    else:  # one pointing here already: it was someone's before this run, so it stays after it
        click.echo(f"found webhook {hook_id} -> {hook_url} in project {connector.project} (updated; kept when this stops)")
    return hook_id, created


def _unregister(connector, hook_id: int) -> None:
    from alscale.exceptions import AlscaleError

    try:
        connector.delete_webhook(hook_id)
    except AlscaleError as exc:  # the server may be gone: say so, the stop itself went well
        click.echo(f"alscale: warning: could not remove webhook {hook_id} from project {connector.project}: {exc}", err=True)
    else:
        click.echo(f"removed webhook {hook_id} from project {connector.project}", err=True)
