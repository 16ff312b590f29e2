#!/usr/bin/env python3
"""Writes alerts/log-capturer_test.yaml, the promtool unit tests of alerts/log-capturer.yaml.

The cases below are the source: each gives input series, and for each alert an evaluation
time where it fires (with the label sets expected) and one where it is silent, with series
beside it that must never fire. promtool compares annotations too, so this script fills them
in from the rules (only `{{ $labels.X }}` templates are used there, on purpose). Run it after
changing a rule or a case: `python3 scripts/gen-alert-tests.py`, then
`promtool test rules alerts/log-capturer_test.yaml`. tests/operator_kit.rs checks that every
rule has a firing and a silent case.
"""
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "log-capturer.yaml"
OUT = ROOT / "alerts" / "log-capturer_test.yaml"

JOB = "log-capturer"
HOST = "host-a:8401"


def s(name, labels, values):
    """A series with the default job and instance unless given."""
    labels = {"job": JOB, "instance": HOST, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def L(**labels):
    """Expected alert labels (without severity); job and instance default."""
    return {"job": JOB, "instance": HOST, **labels}


def H(**labels):
    """Expected alert labels without job/instance defaults (for `sum by (job, instance)`)."""
    return labels


P = "log_capturer_"
# (title, series, [(eval_time, alertname, [expected label sets])])
CASES = [
    ("down: a failed scrape for 2m fires, a healthy target does not", [
        s("up", {"instance": "host-a:8401"}, "0x10"),
        s("up", {"instance": "host-b:8401"}, "1x10"),
    ], [("1m", "LogCapturerDown", []), ("5m", "LogCapturerDown", [L()])]),
    ("an unhealthy component for 5m", [
        s(P + "component_health", {"component": "loki"}, "1 1 0x10"),
        s(P + "component_health", {"component": "app"}, "1x12"),
    ], [("4m", "ComponentUnhealthy", []), ("10m", "ComponentUnhealthy", [L(component="loki")])]),
    ("errors above 1/s for 10m; read errors have their own alert", [
        s(P + "errors_total", {"component": "loki", "reason": "timeout"}, "0+120x30"),
        s(P + "errors_total", {"component": "loki", "reason": "connection"}, "0+6x30"),
        s(P + "errors_total", {"component": "app", "reason": "read_error"}, "0+600x30"),
    ], [("8m", "HighErrorRate", []),
        ("20m", "HighErrorRate", [L(component="loki", reason="timeout")])]),
    ("lines lost: a new series and a growing one fire; filtered, duplicates and old counts do not", [
        s(P + "dropped_total", {"component": "loki", "reason": "retries_exhausted"}, "_x10 100x20"),
        s(P + "dropped_total", {"component": "loki", "reason": "http_4xx"}, "1x15 2x15"),
        s(P + "dropped_total", {"component": "loki", "reason": "queue_full"}, "5x30"),
        s(P + "dropped_total", {"component": "f", "reason": "filtered"}, "0+100x30"),
        s(P + "dropped_total", {"component": "d", "reason": "duplicate"}, "_x10 0+100x20"),
    ], [("12m", "LinesLost", [L(component="loki", reason="retries_exhausted")]),
        ("18m", "LinesLost", [L(component="loki", reason="http_4xx")]),
        ("30m", "LinesLost", [])]),
    ("memory above 512 MiB for 15m", [
        s(P + "process_resident_memory_bytes", {"instance": "host-a:8401"}, "1e9x20"),
        s(P + "process_resident_memory_bytes", {"instance": "host-b:8401"}, "1e8x20"),
    ], [("10m", "HighMemoryUsage", []), ("16m", "HighMemoryUsage", [L()])]),
    ("descriptors above 80% of the limit for 10m", [
        s(P + "process_open_fds", {"instance": "host-a:8401"}, "900x20"),
        s(P + "process_max_fds", {"instance": "host-a:8401"}, "1000x20"),
        s(P + "process_open_fds", {"instance": "host-b:8401"}, "100x20"),
        s(P + "process_max_fds", {"instance": "host-b:8401"}, "1000x20"),
    ], [("5m", "FileDescriptorsNearLimit", []), ("12m", "FileDescriptorsNearLimit", [L()])]),
    ("threads above 256 for 15m", [
        s(P + "process_threads", {"instance": "host-a:8401"}, "300x20"),
        s(P + "process_threads", {"instance": "host-b:8401"}, "20x20"),
    ], [("10m", "ThreadCountHigh", []), ("16m", "ThreadCountHigh", [L()])]),
    ("a queue over 90% for 5m", [
        s(P + "queue_size", {"sink": "loki"}, "45500x10"),
        s(P + "queue_capacity", {"sink": "loki"}, "50000x10"),
        s(P + "queue_size", {"sink": "file"}, "100x10"),
        s(P + "queue_capacity", {"sink": "file"}, "50000x10"),
    ], [("3m", "DispatcherQueueSaturated", []),
        ("7m", "DispatcherQueueSaturated", [L(sink="loki")])]),
    ("429 on more than 10% of pushes for 10m", [
        s(P + "http_responses_total", {"sink": "loki", "code": "429"}, "0+30x30"),
        s(P + "http_responses_total", {"sink": "loki", "code": "204"}, "0+60x30"),
        s(P + "http_responses_total", {"sink": "other", "code": "429"}, "0+1x30"),
        s(P + "http_responses_total", {"sink": "other", "code": "204"}, "0+600x30"),
    ], [("5m", "LokiRateLimited", []), ("20m", "LokiRateLimited", [L(sink="loki")])]),
    ("5xx or 260 on more than 10% of pushes for 10m", [
        s(P + "http_responses_total", {"sink": "loki", "code": "503"}, "0+20x30"),
        s(P + "http_responses_total", {"sink": "loki", "code": "260"}, "0+20x30"),
        s(P + "http_responses_total", {"sink": "loki", "code": "204"}, "0+60x30"),
        s(P + "http_responses_total", {"sink": "other", "code": "500"}, "0+1x30"),
        s(P + "http_responses_total", {"sink": "other", "code": "204"}, "0+600x30"),
    ], [("5m", "LokiErrors", []), ("20m", "LokiErrors", [L(sink="loki")])]),
    ("entries rejected for reasons a retry does not fix; timestamp reasons excluded", [
        s(P + "timestamp_rejections_total", {"sink": "loki", "reason": "line_too_long"}, "0+60x20"),
        s(P + "timestamp_rejections_total", {"sink": "loki", "reason": "timestamp_too_old"}, "0+60x20"),
    ], [("3m", "LokiEntriesRejected", []),
        ("10m", "LokiEntriesRejected", [L(sink="loki", reason="line_too_long")])]),
    ("timestamp rejections: a storm (>10/s) and errors (>1/s); other reasons excluded", [
        s(P + "timestamp_rejections_total", {"sink": "loki", "reason": "timestamp_too_old"}, "0+1200x30"),
        s(P + "timestamp_rejections_total", {"sink": "b", "reason": "too_far_behind"}, "0+120x30"),
        s(P + "timestamp_rejections_total", {"sink": "c", "reason": "line_too_long"}, "0+1200x30"),
    ], [("4m", "HighTimestampRejectionRate", []),
        ("20m", "HighTimestampRejectionRate", [L(sink="loki")]),
        ("4m", "LokiTimestampErrors", []),
        ("20m", "LokiTimestampErrors", [L(sink="loki"), L(sink="b")])]),
    ("clamping above 5/s for 10m", [
        s(P + "timestamp_clamped_total", {"sink": "loki"}, "0+600x30"),
        s(P + "timestamp_clamped_total", {"sink": "b"}, "0+60x30"),
    ], [("5m", "TimestampClampingActive", []),
        ("20m", "TimestampClampingActive", [L(sink="loki")])]),
    ("learned max age under an hour for 10m", [
        s(P + "timestamp_max_age_seconds", {"sink": "loki"}, "1800x20"),
        s(P + "timestamp_max_age_seconds", {"sink": "b"}, "604800x20"),
    ], [("5m", "TimestampMaxAgeTooLow", []),
        ("15m", "TimestampMaxAgeTooLow", [L(sink="loki")])]),
    ("positions corruption found at start", [
        s(P + "position_corruptions_total", {"component": "app"}, "_x5 1x10"),
    ], [("3m", "PositionCorruptionDetected", []),
        ("8m", "PositionCorruptionDetected", [L(component="app")])]),
    ("more than 2 failed positions writes in 10m", [
        s(P + "position_save_failures_total", {"component": "app"}, "0+1x20"),
        s(P + "position_save_failures_total", {"component": "b"}, "1x20"),
    ], [("15m", "CheckpointSaveFailures", [L(component="app")])]),
    ("reading paused for most of 10m", [
        s(P + "position_backpressure", {"component": "app"}, "0 0 1x20"),
        s(P + "position_backpressure", {"component": "b"}, "0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1"),
    ], [("6m", "HighPositionBackpressure", []),
        ("15m", "HighPositionBackpressure", [L(component="app")])]),
    ("positions saved more than 10 s late for 5m", [
        s(P + "position_save_lag_seconds", {"component": "app"}, "30x20"),
        s(P + "position_save_lag_seconds", {"component": "b"}, "0.5x20"),
    ], [("3m", "PositionSaveLag", []), ("8m", "PositionSaveLag", [L(component="app")])]),
    ("validation failures: many at start (a new series) or growing", [
        s(P + "position_validation_failures_total", {"component": "app"}, "_x5 8x30"),
        s(P + "position_validation_failures_total", {"component": "b"}, "_x5 2x30"),
        s(P + "position_validation_failures_total", {"component": "c"}, "_x15 0+1x20"),
    ], [("7m", "PositionValidationFailures", [L(component="app")]),
        ("30m", "PositionValidationFailures", [L(component="c")])]),
    ("no checkpoint for 10 minutes", [
        s(P + "checkpoint_age_seconds", {"component": "app"}, "700x20"),
        s(P + "checkpoint_age_seconds", {"component": "b"}, "30x20"),
    ], [("3m", "CheckpointTooOld", []), ("8m", "CheckpointTooOld", [L(component="app")])]),
    ("a frozen file for 5m", [
        s(P + "files_frozen", {"component": "app"}, "1x20"),
        s(P + "files_frozen", {"component": "b"}, "0x20"),
    ], [("3m", "FileStuck", []), ("8m", "FileStuck", [L(component="app")])]),
    ("acknowledgements fall behind while reading goes on", [
        s(P + "read_bytes_total", {"component": "app"}, "0+1000x40"),
        s(P + "positions_lag_bytes", {"component": "app"}, "0+100x40"),
        s(P + "read_bytes_total", {"component": "b"}, "0+1000x40"),
        s(P + "positions_lag_bytes", {"component": "b"}, "0 100 0 100 0 100 0 100 0 100 0 100 0 100 0 100 0 100 0 100 0 100 0 100 0 100 0 100 0 100"),
    ], [("15m", "PositionsNotAdvancing", []),
        ("25m", "PositionsNotAdvancing", [L(component="app")])]),
    ("open-retry queue full for 5m", [
        s(P + "retry_queue_size", {"component": "app"}, "50x20"),
        s(P + "retry_queue_size", {"component": "b"}, "3x20"),
    ], [("3m", "FileMonitorRetryQueueFull", []),
        ("8m", "FileMonitorRetryQueueFull", [L(component="app")])]),
    ("read errors above 2/s for 10m", [
        s(P + "errors_total", {"component": "app", "reason": "read_error"}, "0+300x30"),
        s(P + "errors_total", {"component": "b", "reason": "read_error"}, "0+6x30"),
        s(P + "errors_total", {"component": "loki", "reason": "timeout"}, "0+600x30"),
    ], [("5m", "HighFileReadErrorRate", []),
        ("20m", "HighFileReadErrorRate", [L(component="app")])]),
    ("files given up: a new series and a growing one fire, an old count does not", [
        s(P + "retry_dropped_total", {"component": "app"}, "_x5 1x20"),
        s(P + "retry_dropped_total", {"component": "b"}, "3x30"),
        s(P + "retry_dropped_total", {"component": "c"}, "1x10 2x20"),
    ], [("7m", "RetriesBeingDropped", [L(component="app")]),
        ("12m", "RetriesBeingDropped", [L(component="c")]),
        ("25m", "RetriesBeingDropped", [])]),
    ("old files skipped above 50/s for 10m", [
        s(P + "old_logs_ignored_total", {"component": "app"}, "0+6000x30"),
        s(P + "old_logs_ignored_total", {"component": "b"}, "0+60x30"),
    ], [("5m", "HighOldLogsIgnoredRate", []),
        ("20m", "HighOldLogsIgnoredRate", [L(component="app")])]),
    ("dead-letter queue above 8000 for 5m", [
        s(P + "dlq_queue_size", {"sink": "loki"}, "9000x20"),
        s(P + "dlq_queue_size", {"sink": "b"}, "10x20"),
    ], [("3m", "DLQQueueSizeCritical", []),
        ("8m", "DLQQueueSizeCritical", [L(sink="loki")])]),
    ("replay rounds failing above 0.5/s for 10m", [
        s(P + "dlq_reprocess_failures_total", {"sink": "loki"}, "0+60x30"),
        s(P + "dlq_reprocess_failures_total", {"sink": "b"}, "0+6x30"),
    ], [("5m", "DLQReprocessingFailures", []),
        ("20m", "DLQReprocessingFailures", [L(sink="loki")])]),
    ("dead-letter writes failing: many at once (a new series) or growing", [
        s(P + "dlq_write_failures_total", {"sink": "loki"}, "_x5 10x30"),
        s(P + "dlq_write_failures_total", {"sink": "b"}, "_x5 2x30"),
        s(P + "dlq_write_failures_total", {"sink": "c"}, "_x15 0+1x20"),
    ], [("7m", "DLQWriteFailures", [L(sink="loki")]),
        ("28m", "DLQWriteFailures", [L(sink="c")])]),
    ("entries refused for good within the hour", [
        s(P + "dlq_refused_total", {"sink": "loki", "reason": "line_too_long"}, "_x5 3x100"),
    ], [("10m", "DLQEntriesRefused", [L(sink="loki", reason="line_too_long")]),
        ("70m", "DLQEntriesRefused", [])]),
    ("disk writes failing for 2m: dead letters, positions or a file sink", [
        s(P + "dlq_write_failures_total", {"instance": "host-a:8401", "sink": "loki"}, "0+10x20"),
        s(P + "position_save_failures_total", {"instance": "host-b:8401", "component": "app"}, "5x20"),
        s(P + "errors_total", {"instance": "host-c:8401", "component": "out", "reason": "io_error"}, "0+5x20"),
        s(P + "errors_total", {"instance": "host-d:8401", "component": "loki", "reason": "timeout"}, "0+5x20"),
    ], [("1m", "DiskFull", []),
        ("10m", "DiskFull", [H(job=JOB, instance="host-a:8401"), H(job=JOB, instance="host-c:8401")])]),
    ("duplicates above 30% of checks for 10m", [
        s(P + "dedup_duplicates_total", {"component": "dedup"}, "0+2400x30"),
        s(P + "dedup_checks_total", {"component": "dedup"}, "0+6000x30"),
        s(P + "dedup_duplicates_total", {"component": "b"}, "0+60x30"),
        s(P + "dedup_checks_total", {"component": "b"}, "0+6000x30"),
    ], [("5m", "HighDuplicateRate", []),
        ("20m", "HighDuplicateRate", [L(component="dedup")])]),
    ("a dedup cache evicting for 30m", [
        s(P + "dedup_evictions_total", {"component": "dedup"}, "0+60x60"),
        s(P + "dedup_evictions_total", {"component": "b"}, "5x60"),
    ], [("20m", "DeduplicationCacheFull", []),
        ("40m", "DeduplicationCacheFull", [L(component="dedup")])]),
    ("evictions above 100/s for 15m", [
        s(P + "dedup_evictions_total", {"component": "dedup"}, "0+12000x30"),
        s(P + "dedup_evictions_total", {"component": "b"}, "0+600x30"),
    ], [("10m", "HighEvictionRate", []),
        ("20m", "HighEvictionRate", [L(component="dedup")])]),
    ("dockerd lost more than twice in 10m", [
        s(P + "docker_reconnects_total", {"component": "docker"}, "0+1x20"),
        s(P + "docker_reconnects_total", {"component": "b"}, "1x20"),
    ], [("15m", "DockerDisconnected", [L(component="docker")])]),
    ("Docker API errors above 0.1/s for 10m", [
        s(P + "docker_errors_total", {"component": "docker", "reason": "connection"}, "0+60x30"),
        s(P + "docker_errors_total", {"component": "b", "reason": "connection"}, "0+3x30"),
    ], [("5m", "DockerErrors", []),
        ("20m", "DockerErrors", [L(component="docker", reason="connection")])]),
]


def main():
    rules = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            rules[rule["alert"]] = rule
    tests = []
    for title, series, evals in CASES:
        alert_tests = []
        for at, name, expected in evals:
            rule = rules[name]
            alerts = []
            for labels in expected:
                labels = {**labels, **rule.get("labels", {})}
                annotations = {
                    k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], v)
                    for k, v in rule["annotations"].items()
                }
                alerts.append({"exp_labels": labels, "exp_annotations": annotations})
            alert_tests.append({"eval_time": at, "alertname": name, "exp_alerts": alerts})
        tests.append({"name": title, "interval": "1m", "input_series": series,
                      "alert_rule_test": alert_tests})
    header = (
        "# promtool unit tests of log-capturer.yaml: every alert fires when it should and stays\n"
        "# silent when it should not. Generated by scripts/gen-alert-tests.py (the cases live\n"
        "# there); run: promtool test rules alerts/log-capturer_test.yaml\n"
    )
    body = yaml.safe_dump({"rule_files": ["log-capturer.yaml"], "evaluation_interval": "1m",
                           "tests": tests}, sort_keys=False, width=200)
    OUT.write_text(header + body)


if __name__ == "__main__":
    main()
