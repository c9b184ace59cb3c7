"""``doctor``: check the pipeline end to end, one line per check, each failure with a fix.

Settings (the same OTEL_* variables the app reads), the metrics endpoints (answering, and ours
rather than another program's on the port), the OTLP endpoint (an empty export it accepts, over
gRPC or HTTP as configured) and a Prometheus (our target listed, up, and with recent samples). Last, advice (INFO or
WARN), which never fails the pipeline's check: the price table, and Bedrock where boto3/botocore is installed.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import metadata

from ..client.instrumentors import BOTOCORE, disabled
from ..config import ConfigError, Settings, load_settings
from ..llm.endpoints import BEDROCK as BEDROCK_PROVIDER
from .cost import has_cost_series, price_coverage, who
from .readings import parse, read_metrics
from .upstream import upstream_calls

OUR_SCOPE = 'otel_scope_name="otel_llm_metrics"'
_MARKS = {True: "OK  ", False: "FAIL", None: "SKIP"}
_ADVICE = {True: "INFO", False: "WARN", None: "INFO"}  # never fails the doctor


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str
    fix: str = ""
    advisory: bool = False  # INFO (ok) or WARN with a fix: never fails the doctor

    def line(self) -> str:
        marks = _ADVICE if self.advisory else _MARKS
        mark = marks[self.ok]
        return f"{mark} {self.name}: {self.detail}" + (f"\n     Fix: {self.fix}" if self.fix and not self.ok else "")


def doctor(urls: list[str], otlp: str | None, prometheus: str | None) -> int:
    checks: list[Check] = []
    try:
        settings: Settings | None = load_settings()
        checks.append(_check_settings(settings))
    except ConfigError as error:
        settings = None
        message, _, fix = str(error).partition(" Fix: ")
        checks.append(Check("settings", False, message, fix))
    if not urls:
        urls = [_default_url(settings or Settings())]
    texts: list[str] = []
    checks += [_check_endpoint(url, texts) for url in urls]
    checks.append(_check_otlp(otlp, settings))
    checks.append(_check_prometheus(prometheus, urls))
    checks.append(check_prices(texts or None, settings))
    bedrock = check_bedrock(texts or None, settings)
    if bedrock is not None:
        checks.append(bedrock)
    for check in checks:
        print(check.line(), flush=True)
    return 1 if any(check.ok is False and not check.advisory for check in checks) else 0


def _check_settings(settings: Settings) -> Check:
    """Valid one by one (the parser saw to that); here, whether together they send anything anywhere."""
    if settings.disabled:
        return Check("settings", False, "OTEL_SDK_DISABLED=true: nothing is measured or exported",
                     "OTEL_SDK_DISABLED=false")
    if settings.metrics_exporters == ("none",) and not settings.app_metrics_path:
        return Check("settings", False, "OTEL_METRICS_EXPORTER=none and no app metrics path: metrics go nowhere",
                     "OTEL_METRICS_EXPORTER=prometheus (or otlp with OTEL_EXPORTER_OTLP_ENDPOINT)")
    return Check("settings", True, _describe(settings))


def _describe(settings: Settings) -> str:
    exporters = ",".join(settings.metrics_exporters)
    where = f"Prometheus endpoint on {settings.prometheus_host}:{settings.prometheus_port}" \
        if "prometheus" in settings.metrics_exporters else "no Prometheus endpoint"
    otlp = f", OTLP to {settings.otlp_endpoint or 'http://localhost:4317 (the default)'} ({settings.otlp_protocol})" \
        if "otlp" in settings.metrics_exporters or "otlp" in settings.traces_exporter else ""
    return f"valid (metrics exporters {exporters}; {where}{otlp}; traces {','.join(settings.traces_exporter)})"


def _default_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.prometheus_host in ("0.0.0.0", "::") else settings.prometheus_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.prometheus_port}/metrics"


def _check_endpoint(url: str, texts: list[str] | None = None) -> Check:
    """Whether ``url`` answers with our series; its exposition is added to ``texts`` when it does."""
    name = f"metrics endpoint {url}"
    port = urllib.parse.urlsplit(url).port
    try:
        text = read_metrics(url, timeout=5)
    except urllib.error.HTTPError as exc:
        return Check(name, False, f"answers HTTP {exc.code}: another program holds port {port}",
                     "point OTEL_EXPORTER_PROMETHEUS_PORT (and this URL) at a free port")
    except OSError as exc:
        return Check(name, False, f"does not answer ({getattr(exc, 'reason', exc)})",
                     "start the app (opentelemetry-instrument uvicorn app:app, or otel_llm_metrics.setup()) "
                     "and send it one request: the endpoint starts with the first one; check the port it "
                     "announced in its log")
    if OUR_SCOPE not in text:
        return Check(name, False, f"answers, but with no otel_llm_metrics series: another program holds port {port}",
                     "point OTEL_EXPORTER_PROMETHEUS_PORT (and this URL) at a free port")
    if texts is not None:
        texts.append(text)
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    requests = "http_server_request_duration_seconds" in families
    return Check(name, True, f"{len(families)} metric families, ours included"
                 + ("" if requests else " (no request measured yet)"))


def check_prices(texts: list[str] | None, settings: Settings | None = None) -> Check:
    """The price table installed here, and how many of the models the endpoints (``texts``) have seen have a price.

    Seen: the (provider, response or else requested model) of the token usage series, calls made or responses
    served; priced: those with a cost series. Cost coverage is advice, not a broken pipeline: INFO or WARN.
    """
    name = "price table"
    try:
        version: str | None = metadata.version("genai-prices")
    except metadata.PackageNotFoundError:
        version = None
    table = f"genai-prices {version}" if version else "genai-prices not installed"
    if not _cost_on(settings):
        return Check(name, True, f"cost off (OTEL_LLM_METRICS_COST=false); {table}", advisory=True)
    if version is None:
        return Check(name, False, "genai-prices not installed: only OTEL_LLM_METRICS_PRICES_FILE prices calls",
                     "pip install genai-prices where the app runs (it needs Python 3.11), or price your models "
                     "in OTEL_LLM_METRICS_PRICES_FILE (docs/cost.md)", advisory=True)
    overrides = os.environ.get("OTEL_LLM_METRICS_PRICES_FILE")
    table += f", overrides {overrides}" if overrides else ""
    if texts is None:
        return Check(name, True, f"{table}; models not checked (no metrics endpoint answered)", advisory=True)
    samples, histograms = parse(texts)
    seen, unpriced = price_coverage(samples, histograms)
    if not seen:
        return Check(name, True, f"{table}; no LLM model seen yet", advisory=True)
    if not has_cost_series(samples):
        return Check(name, False, f"{table}; {len(seen)} model(s) seen, but the app reports no cost",
                     "cost is off where the app runs: OTEL_LLM_METRICS_COST=true and genai-prices installed in its "
                     "environment", advisory=True)
    detail = f"{table}; {len(seen) - len(unpriced)} of {len(seen)} models seen have a price"
    if not unpriced:
        return Check(name, True, detail, advisory=True)
    listed = ", ".join(who(*model) for model in unpriced[:10])
    more = f" and {len(unpriced) - 10} more" if len(unpriced) > 10 else ""
    where = f"the overrides file {overrides}" if overrides else \
        "an overrides file named by OTEL_LLM_METRICS_PRICES_FILE"
    provider, model = unpriced[0]
    entry = json.dumps({"model": model, **({"provider": provider} if provider else {})})[:-1]
    return Check(name, False, f"{detail}; no price: {listed}{more}",
                 f"add their prices to {where} (docs/cost.md), in USD per million tokens, e.g. "
                 f'{{"models": [{entry}, "input": USD, "output": USD}}]}}, and restart the app; until then their '
                 "calls are counted as unpriced, never as $0", advisory=True)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_bedrock(texts: list[str] | None, settings: Settings | None = None) -> Check | None:
    """Where botocore is installed (boto3's transport): whether its Bedrock calls are measured here, and why not.

    None where it is not installed. Not measured is advice (WARN): leaving our instrumentor out may be deliberate.
    """
    botocore = _installed("botocore")
    if botocore is None:
        return None
    boto3 = _installed("boto3")
    name = "Bedrock"
    found = f"boto3 {boto3} (botocore {botocore})" if boto3 else f"botocore {botocore}"
    theirs = _installed("opentelemetry-instrumentation-botocore")
    kept = (f"; opentelemetry-instrumentation-botocore {theirs}'s gen_ai.client.* numbers are the only ones kept"
            if theirs else "")
    if disabled(BOTOCORE):
        return Check(name, False, f"{found} installed, but its Bedrock calls are not measured: "
                     f"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS leaves out {BOTOCORE}{kept}",
                     f"remove {BOTOCORE} (or *) from OTEL_PYTHON_DISABLED_INSTRUMENTATIONS where the app runs, "
                     "and restart it", advisory=True)
    if settings is not None and not settings.upstream_calls:
        return Check(name, False, f"{found} installed, but no call the app makes is measured "
                     f"(OTEL_LLM_METRICS_UPSTREAM_CALLS=false), Bedrock's included{kept}",
                     "OTEL_LLM_METRICS_UPSTREAM_CALLS=true where the app runs, and restart it", advisory=True)
    if settings is not None and settings.upstream_hosts \
            and not any("bedrock-runtime" in host for host in settings.upstream_hosts):
        return Check(name, False, f"{found} installed, but OTEL_LLM_METRICS_UPSTREAM_HOSTS "
                     f"({','.join(settings.upstream_hosts)}) names no bedrock-runtime host: its calls are not measured",
                     "add the Bedrock endpoint's host, e.g. bedrock-runtime.us-east-1.amazonaws.com, to "
                     "OTEL_LLM_METRICS_UPSTREAM_HOSTS (or unset it to measure any LLM API), and restart the app",
                     advisory=True)
    detail = f"{found}: Bedrock calls measured ({BOTOCORE})"
    if texts is not None:
        samples, histograms = parse(texts)
        calls = [u for u in upstream_calls(histograms, samples) if u.provider == BEDROCK_PROVIDER]
        models = ", ".join(u.model or "-" for u in calls)
        detail += f"; {sum(u.calls for u in calls):.0f} Bedrock call(s) seen ({models})" if calls \
            else "; no Bedrock call seen yet"
    return Check(name, True, detail, advisory=True)


def _cost_on(settings: Settings | None) -> bool:
    """OTEL_LLM_METRICS_COST, as the settings read it (or the variable itself when they could not be read)."""
    on = getattr(settings, "cost", None)
    if isinstance(on, bool):
        return on
    return os.environ.get("OTEL_LLM_METRICS_COST", "true").strip().lower() not in ("0", "false", "no", "off")


def _check_otlp(endpoint: str | None, settings: Settings | None) -> Check:
    configured = settings is not None and ("otlp" in settings.metrics_exporters or "otlp" in settings.traces_exporter)
    endpoint = endpoint or (settings.otlp_endpoint if settings else None)
    if endpoint is None and not configured:
        return Check("OTLP", None, "not configured (set OTEL_EXPORTER_OTLP_ENDPOINT, or pass --otlp, to check it)")
    endpoint = endpoint or "http://localhost:4317"
    protocol = settings.otlp_protocol if settings else "grpc"
    name = f"OTLP {endpoint} ({protocol})"
    fix = ("start the collector, or point OTEL_EXPORTER_OTLP_ENDPOINT at it "
           "(gRPC usually :4317, OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf usually :4318)")
    try:
        detail = _export_nothing_grpc(endpoint) if protocol == "grpc" else _export_nothing_http(endpoint)
    except Exception as exc:  # noqa: BLE001 - every way of failing is a failed check
        return Check(name, False, f"does not accept an export ({_reason(exc)})", fix)
    return Check(name, True, detail)


def _reason(exc: Exception) -> str:
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):  # a gRPC error
        return f"{code().name}: {details()}"[:200]
    return str(getattr(exc, "reason", exc)).splitlines()[0][:200]


def _export_nothing_grpc(endpoint: str) -> str:
    import grpc
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub

    parts = urllib.parse.urlsplit(endpoint)
    target = parts.netloc or endpoint
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if parts.scheme == "https" \
        else grpc.insecure_channel(target)
    with channel:
        MetricsServiceStub(channel).Export(ExportMetricsServiceRequest(), timeout=5)
    return "accepted an empty metrics export over gRPC"


def _export_nothing_http(endpoint: str) -> str:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/metrics"):
        url += "/v1/metrics"
    request = urllib.request.Request(url, data=ExportMetricsServiceRequest().SerializeToString(), method="POST",
                                     headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a URL the user gave
        return f"accepted an empty metrics export over HTTP ({response.status})"


def _check_prometheus(prometheus: str | None, urls: list[str]) -> Check:
    if prometheus is None:
        return Check("Prometheus", None, "not checked (pass --prometheus http://prometheus:9090)")
    base = prometheus.rstrip("/")
    name = f"Prometheus {base}"
    try:
        with urllib.request.urlopen(f"{base}/api/v1/targets?state=active", timeout=5) as response:  # noqa: S310
            targets = json.load(response)["data"]["activeTargets"]
    except Exception as exc:  # noqa: BLE001
        return Check(name, False, f"does not answer its API ({exc})", "check the --prometheus URL")
    wanted = {urllib.parse.urlsplit(url).netloc for url in urls}
    ours = [t for t in targets if urllib.parse.urlsplit(t.get("scrapeUrl", "")).netloc in wanted]
    if not ours:
        return Check(name, False, f"does not scrape {', '.join(sorted(wanted))}",
                     f"add a scrape target for {', '.join(sorted(wanted))} "
                     "(static_configs: - targets: [...], as in compose/prometheus.yml)")
    for target in ours:
        if target.get("health") != "up":
            return Check(name, False, f"target {target['scrapeUrl']} is {target.get('health')}: "
                                      f"{target.get('lastError') or 'not scraped yet'}",
                         "make the endpoint reachable from Prometheus (OTEL_EXPORTER_PROMETHEUS_HOST=0.0.0.0 "
                         "in a container)")
        last = _seconds_since(target.get("lastScrape", ""))
        if last is None or last > 120:
            return Check(name, False, f"target {target['scrapeUrl']} has no recent samples "
                                      f"(last scrape {target.get('lastScrape')})", "check the scrape interval")
    return Check(name, True, f"scrapes {', '.join(t['scrapeUrl'] for t in ours)}: up, last scrape "
                             f"{min(_seconds_since(t['lastScrape']) or 0 for t in ours):.0f} s ago")


def _seconds_since(rfc3339: str) -> float | None:
    from datetime import datetime

    text = re.sub(r"(\.\d{6})\d+", r"\1", rfc3339.replace("Z", "+00:00"))  # nanoseconds -> microseconds
    try:
        return time.time() - datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
