"""The command line: `kubectl modelpilot <command> [NAME] [options]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from modelpilot.kubectl.acting import make_request
from modelpilot.kubectl.cluster import Cluster, Target
from modelpilot.kubectl.dashboard.server import serve
from modelpilot.kubectl.errors import NotFoundError, PluginError
from modelpilot.kubectl.interrupt import interruptible
from modelpilot.kubectl.screen import history_rows, list_rows, status_of, status_screen
from modelpilot.operator.builders.common import COMPONENT_LABEL, DEPLOYMENT_LABEL, TRACK_LABEL, label_value

ACTIONS = {
    "promote": "skip the remaining steps and promote the canary's version now",
    "abort": "stop the rollout: all traffic back on stable, the canary removed, the registry untouched",
    "pause": "hold the rollout at its weight; no analysis, no next step, until resume",
    "resume": "resume a paused rollout, or roll a version aborted by request out again from the first step",
    "retrain": "start a training Job now (after the one that runs, if any)",
}
WAIT_SECONDS = 30.0
WATCH_SECONDS = 2.0
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; the exit code (0 done, 1 failed, 3 not found, 4 not allowed, 5 does not apply,
    6 no answer from the operator, 130 interrupted)."""
    out = out or sys.stdout
    args = parser().parse_args(argv)
    try:
        target = Target(
            kubeconfig=getattr(args, "kubeconfig", None),
            context=getattr(args, "context", None),
            namespace=getattr(args, "namespace", None),
            as_user=getattr(args, "as_user", None),
            as_group=getattr(args, "as_group", None),
        )
        cluster = Cluster.connect(target)
        return int(args.run(cluster, args, out))
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    """The argument parser; each command sets `run`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="kubeconfig file (default: KUBECONFIG)")
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default: the context's)")
    common.add_argument("--as", dest="as_user", default=argparse.SUPPRESS, help="user to impersonate")
    common.add_argument("--as-group", default=argparse.SUPPRESS, help="group to impersonate")
    common.add_argument(
        "-o", "--output", choices=["table", "json", "yaml"], default=argparse.SUPPRESS, help="output format"
    )
    main_parser = argparse.ArgumentParser(
        prog="kubectl modelpilot",
        parents=[common],
        description="See a ModelDeployment's rollout at a glance and act on it; every act records who and why.",
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", parents=[common], help="ModelDeployments of the namespace")
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="of every namespace")
    listing.set_defaults(run=run_list)

    for command in ("status", "get"):
        showing = commands.add_parser(command, parents=[common], help="one screen about a ModelDeployment")
        showing.add_argument("name")
        showing.add_argument("-w", "--watch", action="store_true", help="redraw until interrupted")
        showing.add_argument("--interval", type=float, default=WATCH_SECONDS, help="seconds between redraws")
        showing.set_defaults(run=run_status)

    history = commands.add_parser("history", parents=[common], help="status history, with who asked and why")
    history.add_argument("name")
    history.set_defaults(run=run_history)

    for action, description in ACTIONS.items():
        acting = commands.add_parser(action, parents=[common], help=description, description=description)
        acting.add_argument("name")
        acting.add_argument("--reason", default="", help="why: kept with the request in the audit trail")
        acting.add_argument(
            "--wait", type=float, default=WAIT_SECONDS, help="seconds to wait for the operator's answer (0: none)"
        )
        acting.set_defaults(run=run_action, action=action)

    logs = commands.add_parser("logs", parents=[common], help="logs of the serving or training pods")
    logs.add_argument("name")
    logs.add_argument("--track", choices=["stable", "canary", "training"], default="stable", help="which pods")
    logs.add_argument("--tail", type=int, default=None, help="lines from the end of each log")
    logs.add_argument("-c", "--container", default=None, help="container (default: the pod's only one)")
    logs.add_argument("-f", "--follow", action="store_true", help="follow the newest pod's log")
    logs.set_defaults(run=run_logs)

    dashboard = commands.add_parser(
        "dashboard",
        parents=[common],
        help="a local web page: rollouts, analyses, drift, training, and predictions from an uploaded CSV",
        description=(
            "Serve a web page on 127.0.0.1 (a free port unless --port) that reads the API server with your "
            "kubeconfig; its URL is printed. Ctrl-C stops it."
        ),
    )
    dashboard.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace's ModelDeployments")
    dashboard.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    dashboard.add_argument("--open", action="store_true", help="open the page in the default browser")
    dashboard.set_defaults(run=run_dashboard)

    whoami = commands.add_parser("whoami", parents=[common], help="the user name your requests are signed with")
    whoami.set_defaults(run=run_whoami)
    return main_parser


def _output(args: argparse.Namespace) -> str:
    return str(getattr(args, "output", "table"))


def _dump(data: Any, args: argparse.Namespace, out: TextIO) -> None:
    if _output(args) == "json":
        print(json.dumps(data, indent=2, default=str), file=out)
    else:
        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip(), file=out)


def _now() -> datetime:
    return datetime.now(UTC)


def run_list(cluster: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    objs = cluster.list_all(all_namespaces=args.all_namespaces)
    if _output(args) != "table":
        _dump({"apiVersion": "v1", "kind": "List", "items": objs}, args, out)
        return 0
    if not objs:
        where = "any namespace" if args.all_namespaces else f"namespace {cluster.namespace}"
        print(f"No ModelDeployments in {where}.", file=out)
        return 0
    print(list_rows(objs, _now(), args.all_namespaces), file=out)
    return 0


def run_status(cluster: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    with interruptible() as interrupt:
        while True:
            obj = cluster.get(args.name)
            if _output(args) != "table":
                _dump(obj, args, out)
            else:
                screen = status_screen(obj, cluster.events(args.name), _now())
                print(f"{CLEAR_SCREEN if args.watch else ''}{screen}", file=out, flush=True)
            if not args.watch:
                return 0
            interrupt.sleep(args.interval)


def run_history(cluster: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    status = status_of(cluster.get(args.name))
    if _output(args) != "table":
        _dump([entry.dump() for entry in status.history], args, out)
    else:
        print(history_rows(status.history), file=out)
    return 0


def run_action(cluster: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    with interruptible() as interrupt:
        answer = make_request(
            cluster, args.name, args.action, args.reason, wait_seconds=args.wait, sleep=interrupt.sleep
        )
    if answer is None:
        print(f"{args.action} requested for {args.name}", file=out)
        return 0
    if _output(args) != "table":
        _dump(answer.dump(), args, out)
    else:
        print(f"{args.action} {answer.outcome.lower()} by the operator: {answer.message}", file=out)
    return 0 if answer.outcome == "Applied" else 5


def run_logs(cluster: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    name = args.name
    cluster.get(name)  # an unknown resource is said as such, not as "no pods"
    selector = f"{DEPLOYMENT_LABEL}={label_value(name)}"
    if args.track == "training":
        selector += f",{COMPONENT_LABEL}=training"
    else:
        selector += f",{COMPONENT_LABEL}=serving,{TRACK_LABEL}={args.track}"
    pods = cluster.pods(selector)
    if not pods:
        raise NotFoundError(f"{name} has no {args.track} pods in namespace {cluster.namespace}")
    if args.follow:
        newest = pods[-1].metadata.name
        for chunk in cluster.follow_logs(newest, args.container, args.tail):
            out.write(chunk)
            out.flush()
        return 0
    for pod in pods:
        if len(pods) > 1:
            print(f"==> pod {pod.metadata.name} <==", file=out)
        print(cluster.logs(pod.metadata.name, args.container, args.tail).rstrip("\n"), file=out)
    return 0


def run_dashboard(cluster: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    return serve(cluster, all_namespaces=args.all_namespaces, port=args.port, open_browser=args.open, out=out)


def run_whoami(cluster: Cluster, args: argparse.Namespace, out: TextIO) -> int:
    print(cluster.whoami(), file=out)
    return 0


def run() -> None:
    """The `kubectl-modelpilot` program."""
    raise SystemExit(main())
