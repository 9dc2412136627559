"""`featurerollout promote|pause|resume|abort|retry|approve NAME`: manual control, safe from GitOps.

Each command files a request in the annotation that the operator consumes (core/manual_requests.py), then
waits (by default up to 30 s) until the operator records its outcome in `status.lastRequest`, so
that a person knows what became of it. The exit code says which outcome it was (EXIT_CODES).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from featurerollout import GROUP, PLURAL, VERSION
from featurerollout.api import ControlAction, Phase, RequestOutcome, settled
from featurerollout.core.manual_requests import REQUEST_ANNOTATION


def new_request(action: ControlAction, now: datetime | None = None) -> dict[str, str]:
    """A fresh request's annotation value, with an id no earlier request has."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return {"id": f"{moment}-{secrets.token_hex(4)}", "action": action.value}


def request_patch(action: ControlAction, now: datetime | None = None) -> dict[str, Any]:
    """The merge patch that files a request on a FeatureRollout."""
    return {"metadata": {"annotations": {REQUEST_ANNOTATION: json.dumps(new_request(action, now))}}}


WHAT_IT_DOES: dict[ControlAction, str] = {
    ControlAction.PROMOTE: "move to the next stage now, skipping the rest of this stage's hold and analysis",
    ControlAction.PAUSE: "hold the rollout at its current weight (analysis and automatic rollback go on)",
    ControlAction.RESUME: "release a pause made with `featurerollout pause`",
    ControlAction.ABORT: "roll the flag back to 0% now, a finished (Succeeded) rollout's too",
    ControlAction.RETRY: "start again from the first stage after a rollback, an abort or a switch-off by hand",
    ControlAction.APPROVE: "open the manual approval gate (spec.gates) that the rollout waits at, or will "
    "wait at next",
}


# The exit codes of promote|pause|resume|abort|retry, one per outcome.
DONE, NOT_FILED, NOT_CONFIRMED, REFUSED, IGNORED = 0, 1, 2, 3, 4
EXIT_CODES = (
    "exit codes: 0 carried out; 1 the request could not be filed; 2 the operator did not confirm it in "
    "time (it stays filed); 3 refused (the reason is printed; nothing changed: ask again once fixed); "
    "4 ignored (nothing to do in this phase; the reason is printed)"
)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """NAME, -n/--namespace, --kubeconfig, --context: how every CLI command finds its rollout."""
    parser.add_argument("name", metavar="NAME", help="the FeatureRollout")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    add_kubeconfig_arguments(parser)


def add_kubeconfig_arguments(parser: argparse.ArgumentParser) -> None:
    """--kubeconfig, --context: which cluster a CLI command talks to."""
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")


def add_parser(subparsers: Any) -> None:
    for action in ControlAction:
        parser = subparsers.add_parser(
            action.value,
            help=WHAT_IT_DOES[action].replace("%", "%%"),
            description=f"{WHAT_IT_DOES[action].capitalize()}. The request goes in the annotation "
            f"{REQUEST_ANNOTATION}, not the spec, so Argo CD or Flux will not revert it.",
            epilog=EXIT_CODES,
        )
        add_target_arguments(parser)
        parser.add_argument(
            "--wait", type=float, default=30.0, metavar="SECONDS",
            help="wait this long for the operator to confirm (0: don't wait; default 30)",
        )
        parser.set_defaults(func=lambda args, action=action: request(args, action))


def client_for(args: argparse.Namespace) -> tuple[Any, str]:
    """A CustomObjectsApi for the kubeconfig in `args`, and the namespace to use."""
    from kubernetes import client, config

    config.load_kube_config(config_file=args.kubeconfig, context=args.context)
    namespace = args.namespace
    if not namespace:
        _, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        if args.context:
            contexts, _ = config.list_kube_config_contexts(config_file=args.kubeconfig)
            active = next((c for c in contexts if c["name"] == args.context), active)
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    return client.CustomObjectsApi(), namespace


def explain_api_error(error: Exception, kind_name: str, not_found: str | None = None) -> str:
    """The API server's message, or what a person should check (`not_found`: what a 404 means,
    when it is not a missing object; a list answers 404 only when the CRD is missing)."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(error, ApiException):
        if error.status == 404:
            return not_found or f"{kind_name} not found (check the name and -n/--namespace)"
        try:
            return str(json.loads(error.body or "{}").get("message") or error.reason)
        except ValueError:
            return str(error.reason)
    return str(error)


def request(args: argparse.Namespace, action: ControlAction) -> int:
    """File the request, then wait for the operator to confirm it."""
    api, namespace = client_for(args)
    where = f"featurerollout {namespace}/{args.name}"
    patch = request_patch(action)
    request_id = json.loads(patch["metadata"]["annotations"][REQUEST_ANNOTATION])["id"]
    try:
        api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name, patch)
    except Exception as error:
        print(f"error: {explain_api_error(error, where)}", file=sys.stderr)
        return NOT_FILED
    print(f"{where}: {action.value} requested (id {request_id})")
    if args.wait <= 0:
        return DONE
    deadline = time.monotonic() + args.wait
    pending_since: float | None = None
    while time.monotonic() < deadline:
        body = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name)
        status = body.get("status") or {}
        handled = status.get("lastRequest") or {}
        if handled.get("id") == request_id:
            # A rollback is on record a moment before its 0% is written (engine.rollback_intent):
            # give the 0% a few seconds, so that "done" means users are off the flag. If it takes
            # longer (a target refusing the 0% is retried), the status message printed says so.
            if not rollback_pending(status, handled):
                return report(where, action, status, handled)
            pending_since = pending_since if pending_since is not None else time.monotonic()
            if time.monotonic() - pending_since >= ROLLBACK_GRACE:
                return report(where, action, status, handled)
        time.sleep(0.5)
    if pending_since is not None:
        return report(where, action, status, handled)
    print(
        f"{where}: the operator has not confirmed the request within {args.wait:g}s; it stays filed and "
        "is carried out when the operator next looks (is the operator running?)",
        file=sys.stderr,
    )
    return NOT_CONFIRMED


ROLLBACK_GRACE = 5.0  # seconds a confirmed rollback's 0% may take before the outcome is printed anyway


def rollback_pending(status: dict[str, Any], handled: dict[str, Any]) -> bool:
    """A request carried out as a rollback whose 0% is not written yet (api.settled)."""
    return (handled.get("outcome", RequestOutcome.DONE.value) == RequestOutcome.DONE.value
            and status.get("phase") == Phase.ROLLED_BACK and not settled(status))


def report(where: str, action: ControlAction, status: dict[str, Any], handled: dict[str, Any]) -> int:
    """Print what became of the request, and return its exit code."""
    outcome = handled.get("outcome", RequestOutcome.DONE.value)
    reason = handled.get("reason")
    if outcome == RequestOutcome.REFUSED.value:
        print(f"{where}: {action.value} refused: {reason}", file=sys.stderr)
        return REFUSED
    if outcome == RequestOutcome.IGNORED.value:
        print(f"{where}: {action.value} ignored: {reason}", file=sys.stderr)
        return IGNORED
    print(f"{where}: {status.get('phase', '?')}: {status.get('message', '')}")
    if reason:
        print(f"{where}: note: {reason}")
    return DONE
