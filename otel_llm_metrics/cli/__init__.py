"""``otel-llm-metrics``: read metrics endpoints and show the numbers that matter.

    otel-llm-metrics summary  [URL...]                   the key numbers since start, once
    otel-llm-metrics snapshot [URL...] --json [--state FILE]
    otel-llm-metrics watch    [URL...] [--interval 2]    a live dashboard (rates over each interval)
    otel-llm-metrics record   [URL...] --csv FILE --interval 5 [--duration 300]
    otel-llm-metrics report   FILE.csv --out DIR         PNG plots and report.md
    otel-llm-metrics doctor   [URL...] [--otlp ENDPOINT] [--prometheus URL]

Several URLs (one per instance) are read and merged. Percentiles come from histogram buckets: where
a bucket is wide, the output gives its bounds with the mean beside it; what nobody reported is "-".
Exit codes: 0 done, 1 an endpoint could not be read (summary, snapshot) or a doctor check failed,
2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .readings import DEFAULT_URL, HistogramData, Reading, parse, read_all, read_metrics
from .snapshot import SNAPSHOT_SCHEMA, snapshot, snapshot_with_state
from .summary import summary

__all__ = ["DEFAULT_URL", "SNAPSHOT_SCHEMA", "HistogramData", "Reading", "main", "parse", "read_all", "read_metrics",
           "snapshot", "summary"]

_EXAMPLES = {
    "summary": "otel-llm-metrics summary http://127.0.0.1:9464/metrics | head",
    "snapshot": "otel-llm-metrics snapshot --json --state /tmp/llm.json   # rates since the previous call",
    "watch": "otel-llm-metrics watch http://127.0.0.1:9464/metrics --interval 2",
    "record": "otel-llm-metrics record --csv load.csv --interval 5 --duration 300",
    "report": "otel-llm-metrics report load.csv --out load-report",
    "doctor": "otel-llm-metrics doctor --otlp http://127.0.0.1:4317 --prometheus http://127.0.0.1:9090",
}
_HELP = {
    "summary": "the key numbers since start, once",
    "snapshot": f"one snapshot; --json for the schema {SNAPSHOT_SCHEMA} (docs/cli.md)",
    "watch": "a live dashboard: rates and percentiles over each interval, retries an endpoint that is down",
    "record": "one CSV row per interval during a load test, MCP operations beside it in FILE.mcp.csv "
              "(stops at --duration or Ctrl-C)",
    "report": "PNG plots of a recorded CSV and a report.md with the headline figures (and the MCP table's)",
    "doctor": "check settings, metrics endpoints, OTLP and Prometheus, then the price table (advice); "
              "exit 1 if a check fails",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-llm-metrics", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _HELP:
        cmd = sub.add_parser(name, help=_HELP[name], description=_HELP[name], epilog=f"example:\n  {_EXAMPLES[name]}",
                             formatter_class=argparse.RawTextHelpFormatter)
        if name == "report":
            cmd.add_argument("csv", metavar="FILE.csv", help="a CSV written by record")
            cmd.add_argument("--out", required=True, metavar="DIR", help="where the PNGs and report.md go")
            continue
        default = [] if name == "doctor" else [DEFAULT_URL]
        cmd.add_argument("urls", nargs="*", default=default, metavar="URL",
                         help=f"metrics endpoints, merged (default {DEFAULT_URL}"
                              + (", or the one the OTEL_* settings give)" if name == "doctor" else ")"))
        if name in ("watch", "record"):
            cmd.add_argument("--interval", type=float, default=2.0 if name == "watch" else 5.0, metavar="S")
        if name == "watch":
            cmd.add_argument("--count", type=int, default=0, help="stop after N screens (0: until Ctrl-C)")
        if name == "record":
            cmd.add_argument("--csv", required=True, metavar="FILE")
            cmd.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
        if name == "snapshot":
            cmd.add_argument("--json", action="store_true", help=f"one JSON object, schema {SNAPSHOT_SCHEMA}")
            cmd.add_argument("--state", metavar="FILE", help="keep this snapshot in FILE; with the one there "
                                                             "before, the JSON gives rates since then")
        if name == "doctor":
            cmd.add_argument("--otlp", metavar="ENDPOINT", help="OTLP endpoint (default OTEL_EXPORTER_OTLP_ENDPOINT)")
            cmd.add_argument("--prometheus", metavar="URL", help="a Prometheus that should scrape the endpoints")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "watch":
            from .watch import watch

            return watch(args.urls, args.interval, args.count)
        if args.command == "record":
            from .record import record

            return record(args.urls, args.csv, args.interval, args.duration)
        if args.command == "report":
            from .report import report

            return report(args.csv, args.out)
        if args.command == "doctor":
            from .doctor import doctor

            return doctor(args.urls, args.otlp, args.prometheus)
        try:
            texts = read_all(args.urls)
        except OSError as exc:
            print(f"otel-llm-metrics: {exc}", file=sys.stderr)
            return 1
        if args.command == "snapshot" and args.json:
            print(json.dumps(snapshot_with_state(texts, args.state), indent=1), flush=True)
        else:
            print(summary(texts), flush=True)
        return 0
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # the reader went away (`| head`): not a read error, and nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
