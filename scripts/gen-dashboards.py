#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/*.json from the panel lists below.

Edit here, run `python3 scripts/gen-dashboards.py`, commit both. Every dashboard has a stable
uid, schemaVersion 39, and the variables `datasource` (a Prometheus data source), `job` and
`instance`; every query filters on `job=~"$job", instance=~"$instance"` through the `F`
placeholder. tests/operator_kit.rs checks the structure and runs every query against a real
Prometheus scraping the real binary.
"""
import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent.parent / "dashboards"
F = 'job=~"$job", instance=~"$instance"'
DS = {"type": "prometheus", "uid": "${datasource}"}
P = "log_capturer_"


def q(expr, legend):
    return (expr.replace("{F}", F), legend)


def panel(title, description, targets, unit="short", kind="timeseries", stack=False):
    return {"title": title, "description": description, "targets": targets, "unit": unit,
            "kind": kind, "stack": stack}


def build(uid, title, description, rows):
    panels = []
    y = 0
    pid = 1
    for row_title, row_panels in rows:
        panels.append({"type": "row", "title": row_title, "id": pid, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        width = 24 // min(len(row_panels), 3) if row_panels else 24
        for i, p in enumerate(row_panels):
            x = (i % 3) * width
            if i and i % 3 == 0:
                y += 8
            h = 5 if p["kind"] == "stat" else 8
            targets = []
            for n, (expr, legend) in enumerate(p["targets"]):
                targets.append({"datasource": DS, "expr": expr, "legendFormat": legend,
                                "refId": chr(ord("A") + n), "range": True,
                                "instant": False})
            field = {"defaults": {"unit": p["unit"]}, "overrides": []}
            if p["kind"] == "timeseries":
                field["defaults"]["custom"] = {
                    "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                    "stacking": {"mode": "normal" if p["stack"] else "none", "group": "A"},
                }
                options = {"legend": {"displayMode": "list", "placement": "bottom",
                                      "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "desc"}}
            else:
                field["defaults"]["thresholds"] = {"mode": "absolute", "steps": [
                    {"color": "green", "value": None}]}
                options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                             "values": False},
                           "colorMode": "value", "graphMode": "area", "textMode": "auto"}
            panels.append({"type": p["kind"], "title": p["title"], "id": pid,
                           "description": p["description"], "datasource": DS,
                           "gridPos": {"h": h, "w": width, "x": x, "y": y},
                           "targets": targets, "fieldConfig": field, "options": options})
            pid += 1
        y += 8
    variables = [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
         "options": []},
        {"name": "job", "label": "Job", "type": "query", "datasource": DS,
         "query": {"query": f"label_values({P}build_info, job)", "refId": "job"},
         "definition": f"label_values({P}build_info, job)", "refresh": 2,
         "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0,
         "options": [], "sort": 1, "regex": ""},
        {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
         "query": {"query": f'label_values({P}build_info{{job=~"$job"}}, instance)',
                   "refId": "instance"},
         "definition": f'label_values({P}build_info{{job=~"$job"}}, instance)',
         "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "current": {},
         "hide": 0, "options": [], "sort": 1, "regex": ""},
    ]
    links = [{"title": "log-capturer", "type": "dashboards", "tags": ["log-capturer"],
              "asDropdown": True, "includeVars": True, "keepTime": True}]
    return {"uid": uid, "title": title, "description": description,
            "tags": ["log-capturer"], "schemaVersion": 39, "version": 1, "editable": True,
            "graphTooltip": 1, "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
            "timezone": "", "templating": {"list": variables}, "annotations": {"list": []},
            "links": links, "panels": panels, "id": None}


RATE = "$__rate_interval"
DASHBOARDS = {
    "overview": build("log-capturer-overview", "log-capturer / Overview",
        "Is the shipper healthy and keeping up? Lines in and out per component, errors, losses, queue fill, latency.", [
        ("Health", [
            panel("Unhealthy components", "Components reporting themselves unhealthy now (0 is good). A sink is unhealthy from a failed send until its next success; GET /health says why.",
                  [q(f"count(({P}component_health{{{{F}}}}) == 0) or vector(0)", "unhealthy")], kind="stat"),
            panel("Lines delivered per second", "Log lines every sink's destination accepted, per second, summed over the selected instances.",
                  [q(f'sum(rate({P}sent_entries_total{{{{F}}}}[{RATE}])) or vector(0)', "delivered/s")], unit="short", kind="stat"),
            panel("Lines lost (last hour)", "Lines discarded for a reason other than a filter or deduplication in the last hour: errored acknowledgements, full queues under drop_newest, oversize lines. Should be 0.",
                  [q(f'sum(increase({P}dropped_total{{{{F}}, reason!~"filtered|duplicate"}}[1h])) or vector(0)', "lost")], kind="stat"),
        ]),
        ("Throughput", [
            panel("Lines per second by component", "Events each source emitted, each transform passed on and each sink delivered. A sink below its sources means it falls behind or drops.",
                  [q(f"sum by (component) (rate({P}logs_processed_total{{{{F}}}}[{RATE}]))", "{{component}}")]),
            panel("Errors per second", "Failures by component and reason (send attempts that failed, read errors). Retried failures lose nothing; see Lines dropped.",
                  [q(f"sum by (component, reason) (rate({P}errors_total{{{{F}}}}[{RATE}]))", "{{component}} {{reason}}")]),
            panel("Lines dropped per second", "Lines discarded by reason: filtered and duplicate are on purpose; any other reason is data loss.",
                  [q(f"sum by (component, reason) (rate({P}dropped_total{{{{F}}}}[{RATE}]))", "{{component}} {{reason}}")], stack=True),
        ]),
        ("Queues and latency", [
            panel("Queue fill", "Share of each sink's queue in use (queue_size / queue_capacity). Near 1: the sink is slower than its input; sources slow down (block) or lines drop (drop_newest).",
                  [q(f"max by (sink) ({P}queue_size{{{{F}}}} / {P}queue_capacity{{{{F}}}})", "{{sink}}")], unit="percentunit"),
            panel("Send latency p99", "99th percentile of one send attempt per sink, by outcome. The largest part of the time from reading a line to its acknowledgement once it left the queue.",
                  [q(f"histogram_quantile(0.99, sum by (sink, outcome, le) (rate({P}send_duration_seconds_bucket{{{{F}}}}[{RATE}])))", "{{sink}} {{outcome}}")], unit="s"),
            panel("Bytes read but not acknowledged", "Per file source: bytes read from files whose acknowledgement by every sink is outstanding (read − committed offsets). It rises and falls with batches; steady growth means deliveries are stuck.",
                  [q(f"sum by (component) ({P}positions_lag_bytes{{{{F}}}})", "{{component}}")], unit="bytes"),
        ]),
        ("Process", [
            panel("Resident memory", "Memory of each instance. It should level off after start; steady growth is a leak or a queue filling.",
                  [q(f"{P}process_resident_memory_bytes{{{{F}}}}", "{{instance}}")], unit="bytes"),
            panel("Descriptors in use", "Open descriptors as a share of the limit. At the limit files are parked and API connections refused.",
                  [q(f"{P}process_open_fds{{{{F}}}} / {P}process_max_fds{{{{F}}}}", "{{instance}}")], unit="percentunit"),
            panel("Builds running", "Instances by version, from build_info: shows a rollout in progress.",
                  [q(f"count by (version) ({P}build_info{{{{F}}}})", "{{version}}")]),
        ]),
    ]),
    "sources": build("log-capturer-sources", "log-capturer / Sources",
        "File sources: files followed, reading, rotation, open retries, and the positions system (lag, saves, checkpoints).", [
        ("Files", [
            panel("Files watched", "Files each file source follows now (open, parked for lack of descriptors, or draining after rotation).",
                  [q(f"sum by (component) ({P}files_watched{{{{F}}}})", "{{component}}")]),
            panel("Read rate", "Bytes per second read from files by each source.",
                  [q(f"sum by (component) (rate({P}read_bytes_total{{{{F}}}}[{RATE}]))", "{{component}}")], unit="Bps"),
            panel("File events", "Files opened, rotated away, truncated (copytruncate) and recognised under a reused inode, per second.",
                  [q(f"sum by (component) (rate({P}files_opened_total{{{{F}}}}[{RATE}]))", "{{component}} opened"),
                   q(f"sum by (component) (rate({P}files_rotated_total{{{{F}}}}[{RATE}]))", "{{component}} rotated"),
                   q(f"sum by (component) (rate({P}files_truncated_total{{{{F}}}}[{RATE}]))", "{{component}} truncated"),
                   q(f"sum by (component) (rate({P}files_inode_reused_total{{{{F}}}}[{RATE}]))", "{{component}} inode reused")]),
            panel("Open retries", "Files waiting to be opened again after an error, and files given up (data loss). The queue holds retry_queue_size files (50).",
                  [q(f"sum by (component) ({P}retry_queue_size{{{{F}}}})", "{{component}} waiting"),
                   q(f"sum by (component) (increase({P}retry_dropped_total{{{{F}}}}[{RATE}]))", "{{component}} given up")]),
            panel("Lines altered", "Lines cut to max_line_bytes and lines that were not valid UTF-8, per second.",
                  [q(f"sum by (component) (rate({P}lines_truncated_total{{{{F}}}}[{RATE}]))", "{{component}} truncated"),
                   q(f"sum by (component) (rate({P}invalid_utf8_lines_total{{{{F}}}}[{RATE}]))", "{{component}} invalid UTF-8")]),
            panel("Missing include directories", "Directories named by include patterns that do not exist: nothing there can be found until they appear.",
                  [q(f"sum by (component) ({P}include_dirs_missing{{{{F}}}})", "{{component}}")]),
        ]),
        ("Positions", [
            panel("Positions lag (read − committed)", "Bytes read but not yet acknowledged by every sink, per source. What a crash now would read again. Steady growth: a sink is not acknowledging.",
                  [q(f"sum by (component) ({P}positions_lag_bytes{{{{F}}}})", "{{component}}")], unit="bytes"),
            panel("Stuck files", "Files whose committed offset is frozen for the rest of the run by an undelivered batch; a restart reads them again from there.",
                  [q(f"sum by (component) ({P}files_frozen{{{{F}}}})", "{{component}}")]),
            panel("Save lag and backpressure", "Age of the oldest acknowledged offset not yet saved (seconds), and 1 while reading is paused because positions cannot be saved.",
                  [q(f"max by (component) ({P}position_save_lag_seconds{{{{F}}}})", "{{component}} save lag"),
                   q(f"max by (component) ({P}position_backpressure{{{{F}}}})", "{{component}} paused")]),
            panel("Saves and failures", "Positions documents written and writes that failed, per second. Failures mean a full or read-only data directory.",
                  [q(f"sum by (component) (rate({P}position_saves_total{{{{F}}}}[{RATE}]))", "{{component}} saved"),
                   q(f"sum by (component) (rate({P}position_save_failures_total{{{{F}}}}[{RATE}]))", "{{component}} failed")]),
            panel("Save duration p99", "99th percentile time of one atomic positions write. Seconds here mean a slow disk.",
                  [q(f"histogram_quantile(0.99, sum by (component, le) (rate({P}position_save_duration_seconds_bucket{{{{F}}}}[{RATE}])))", "{{component}}")], unit="s"),
            panel("Checkpoint age and recoveries", "Age of the newest checkpoint, and counts since start of corrupt positions files, checkpoint restores and saved positions that no longer matched their file.",
                  [q(f"max by (component) ({P}checkpoint_age_seconds{{{{F}}}})", "{{component}} checkpoint age s"),
                   q(f"sum by (component) ({P}position_corruptions_total{{{{F}}}})", "{{component}} corruptions"),
                   q(f"sum by (component) ({P}checkpoint_restores_total{{{{F}}}})", "{{component}} restores"),
                   q(f"sum by (component) ({P}position_validation_failures_total{{{{F}}}})", "{{component}} validation failures")]),
        ]),
        ("Docker", [
            panel("Containers", "Containers the Docker source follows and their active streams (stdout, stderr). Empty until a Docker source runs.",
                  [q(f"sum by (component) ({P}containers_watched{{{{F}}}})", "{{component}} containers"),
                   q(f"sum by (component) ({P}container_streams_active{{{{F}}}})", "{{component}} streams")]),
            panel("dockerd connection", "Reconnects to dockerd and Docker API errors by reason, per second. Reconnects come with a dockerd restart.",
                  [q(f"sum by (component) (rate({P}docker_reconnects_total{{{{F}}}}[{RATE}]))", "{{component}} reconnects"),
                   q(f"sum by (component, reason) (rate({P}docker_errors_total{{{{F}}}}[{RATE}]))", "{{component}} {{reason}}")]),
            panel("Docker events and merges", "Container events seen, by action, and partial lines (over 16 KiB) merged back into one.",
                  [q(f"sum by (action) (rate({P}docker_events_total{{{{F}}}}[{RATE}]))", "{{action}}"),
                   q(f"sum(rate({P}partial_merges_total{{{{F}}}}[{RATE}]))", "partial merges")]),
        ]),
    ]),
    "loki": build("log-capturer-loki", "log-capturer / Loki sink",
        "Loki sinks: what Loki accepted, how it answered, retries, request latency, bytes, and what the timestamp learner learned.", [
        ("Delivery", [
            panel("Entries accepted per second", "Entries Loki accepted per sink (a partial 400 counts only what Loki kept).",
                  [q(f"sum by (sink) (rate({P}sent_entries_total{{{{F}}}}[{RATE}]))", "{{sink}}")]),
            panel("Responses by class", "Push answers per second by status class: 2xx stored, 4xx refused (429 is rate limiting and retried), 5xx retried.",
                  [q(f'sum by (sink, class) (label_replace(rate({P}http_responses_total{{{{F}}}}[{RATE}]), "class", "${{1}}xx", "code", "(.).*"))', "{{sink}} {{class}}")], stack=True),
            panel("429 share", "Share of pushes Loki answered 429 (rate or stream limit). Above 10% for 10 minutes fires LokiRateLimited.",
                  [q(f'sum by (sink) (rate({P}http_responses_total{{{{F}}, code="429"}}[{RATE}])) / sum by (sink) (rate({P}http_responses_total{{{{F}}}}[{RATE}]))', "{{sink}}")], unit="percentunit"),
        ]),
        ("Requests", [
            panel("Request latency", "Median and 99th percentile duration of one push request to Loki.",
                  [q(f"histogram_quantile(0.5, sum by (sink, le) (rate({P}request_duration_seconds_bucket{{{{F}}}}[{RATE}])))", "{{sink}} p50"),
                   q(f"histogram_quantile(0.99, sum by (sink, le) (rate({P}request_duration_seconds_bucket{{{{F}}}}[{RATE}])))", "{{sink}} p99")], unit="s"),
            panel("Retries per second", "Send attempts repeated after a retriable failure (timeouts, 429, 5xx, connection errors).",
                  [q(f"sum by (sink) (rate({P}retries_total{{{{F}}}}[{RATE}]))", "{{sink}}")]),
            panel("Bytes sent per second", "Push bodies sent, after compression.",
                  [q(f"sum by (sink) (rate({P}sent_bytes_total{{{{F}}}}[{RATE}]))", "{{sink}}")], unit="Bps"),
            panel("Batch size p50", "Median events per batch handed to each sink; far below batch_size means batches are cut by batch_timeout.",
                  [q(f"histogram_quantile(0.5, sum by (sink, le) (rate({P}batch_size_bucket{{{{F}}}}[{RATE}])))", "{{sink}}")]),
        ]),
        ("Timestamps", [
            panel("Rejections by reason", "Entries Loki rejected per second, by reason (too old, too far behind, too new, line too long, invalid labels). They go to the dead-letter queue.",
                  [q(f"sum by (sink, reason) (rate({P}timestamp_rejections_total{{{{F}}}}[{RATE}]))", "{{sink}} {{reason}}")]),
            panel("Clamped timestamps", "Entries whose time was moved into Loki's window before sending, per second.",
                  [q(f"sum by (sink) (rate({P}timestamp_clamped_total{{{{F}}}}[{RATE}]))", "{{sink}}")]),
            panel("Learned cutoff", "The oldest entry age Loki accepts, learned from its 'too old' rejections (empty until one was seen).",
                  [q(f"max by (sink) ({P}timestamp_max_age_seconds{{{{F}}}})", "{{sink}}")], unit="s"),
        ]),
    ]),
    "dlq": build("log-capturer-dlq", "log-capturer / Dead-letter queue",
        "Dead-letter queues: what goes in and why, what is waiting, replays, and what is refused for good.", [
        ("Queue", [
            panel("Entries waiting", "Entries in each dead-letter queue not yet replayed. Above 8000 for 5 minutes fires DLQQueueSizeCritical.",
                  [q(f"sum by (sink) ({P}dlq_queue_size{{{{F}}}})", "{{sink}}")]),
            panel("Entries in by reason", "Entries written to the dead-letter queue per second, by why they could not be delivered.",
                  [q(f"sum by (sink, reason) (rate({P}dlq_entries_total{{{{F}}}}[{RATE}]))", "{{sink}} {{reason}}")], stack=True),
            panel("Write failures", "Dead-letter writes that failed per second (full disk, I/O error). The batch is held and retried; reading waits.",
                  [q(f"sum by (sink) (rate({P}dlq_write_failures_total{{{{F}}}}[{RATE}]))", "{{sink}}")]),
        ]),
        ("Replay", [
            panel("Replayed and refused", "Entries replayed whose replay the sink settled, and replayed entries refused again, per second.",
                  [q(f"sum by (sink) (rate({P}dlq_reprocessed_total{{{{F}}}}[{RATE}]))", "{{sink}} replayed"),
                   q(f"sum by (sink) (rate({P}dlq_replay_refused_total{{{{F}}}}[{RATE}]))", "{{sink}} refused again")]),
            panel("Replay rounds failed", "Replay rounds that stopped on an error per second; the records stay queued.",
                  [q(f"sum by (sink) (rate({P}dlq_reprocess_failures_total{{{{F}}}}[{RATE}]))", "{{sink}}")]),
            panel("Refused for good", "Entries refused on every one of max_replays replays and archived, by reason (log-capturer dlq inspect --refused), and archived entries evicted to keep the archive within archive_max_bytes.",
                  [q(f"sum by (sink, reason) (increase({P}dlq_refused_total{{{{F}}}}[1h]))", "{{sink}} {{reason}} /h"),
                   q(f"sum by (sink) (increase({P}dlq_archive_evicted_total{{{{F}}}}[1h]))", "{{sink}} evicted /h")]),
            panel("Archive size", "Bytes on disk of the dead-letter archive, at most archive_max_bytes.",
                  [q(f"sum by (sink) ({P}dlq_archive_bytes{{{{F}}}})", "{{sink}}")], unit="bytes"),
        ]),
    ]),
    "dedup": build("log-capturer-dedup", "log-capturer / Deduplication",
        "Dedup transforms: duplicate share, cache use, evictions.", [
        ("Deduplication", [
            panel("Duplicate share", "Share of checked lines dropped as duplicates. A few percent is usual; above 30% for 10 minutes fires HighDuplicateRate (lost positions, a source configured twice).",
                  [q(f"sum by (component) (rate({P}dedup_duplicates_total{{{{F}}}}[{RATE}])) / sum by (component) (rate({P}dedup_checks_total{{{{F}}}}[{RATE}]))", "{{component}}")], unit="percentunit"),
            panel("Checks and duplicates", "Lines looked up in the cache and lines dropped as duplicates, per second.",
                  [q(f"sum by (component) (rate({P}dedup_checks_total{{{{F}}}}[{RATE}]))", "{{component}} checked"),
                   q(f"sum by (component) (rate({P}dedup_duplicates_total{{{{F}}}}[{RATE}]))", "{{component}} duplicates")]),
            panel("Cache entries", "Keys in each cache, at most cache_size (100000 by default, about 65 bytes each).",
                  [q(f"sum by (component) ({P}dedup_cache_size{{{{F}}}})", "{{component}}")]),
            panel("Evictions per second", "Keys pushed out before their ttl because the cache is full: duplicates further apart pass. Above 100/s the cache is far too small.",
                  [q(f"sum by (component) (rate({P}dedup_evictions_total{{{{F}}}}[{RATE}]))", "{{component}}")]),
        ]),
    ]),
    "pipeline": build("log-capturer-pipeline", "log-capturer / Pipeline stages",
        "Each stage of the pipeline side by side: sources, transforms, the dispatcher's queues and batches, sinks; reloads and the API.", [
        ("Stages", [
            panel("In per stage", "Events emitted by sources and passed on by transforms, per second.",
                  [q(f"sum by (component) (rate({P}logs_processed_total{{{{F}}}}[{RATE}])) unless on (component) label_replace({P}queue_capacity{{{{F}}}}, \"component\", \"$1\", \"sink\", \"(.*)\")", "{{component}}")]),
            panel("Out per sink", "Events each sink delivered per second.",
                  [q(f"sum by (component) (rate({P}logs_processed_total{{{{F}}}}[{RATE}])) and on (component) label_replace({P}queue_capacity{{{{F}}}}, \"component\", \"$1\", \"sink\", \"(.*)\")", "{{component}}")]),
            panel("Filtered and deduplicated", "Events transforms removed on purpose, per second.",
                  [q(f'sum by (component, reason) (rate({P}dropped_total{{{{F}}, reason=~"filtered|duplicate"}}[{RATE}]))', "{{component}} {{reason}}")]),
        ]),
        ("Dispatcher", [
            panel("Queued events", "Events waiting in each sink's queue (not counting the batch being assembled and those in flight).",
                  [q(f"sum by (sink) ({P}queue_size{{{{F}}}})", "{{sink}}")]),
            panel("Send attempts by outcome", "Send attempts per second: delivered, retry, failed.",
                  [q(f"sum by (sink, outcome) (rate({P}send_duration_seconds_count{{{{F}}}}[{RATE}]))", "{{sink}} {{outcome}}")], stack=True),
            panel("Batch size p99", "99th percentile events per batch handed to each sink.",
                  [q(f"histogram_quantile(0.99, sum by (sink, le) (rate({P}batch_size_bucket{{{{F}}}}[{RATE}])))", "{{sink}}")]),
        ]),
        ("Control", [
            panel("Configuration reloads", "Reloads per hour by result; failure means the new file was refused and the old configuration runs.",
                  [q(f"sum by (result) (increase({P}config_reloads_total{{{{F}}}}[1h]))", "{{result}}")]),
            panel("API connections closed", "API connections the server closed per second, by reason. Growing fast: something floods the API.",
                  [q(f"sum by (reason) (rate({P}api_connections_closed_total{{{{F}}}}[{RATE}]))", "{{reason}}")]),
            panel("Threads", "Threads of each process. The worker pool is fixed; growth means blocking work piles up.",
                  [q(f"{P}process_threads{{{{F}}}}", "{{instance}}")]),
        ]),
    ]),
}


def main():
    for name, dash in DASHBOARDS.items():
        (OUT / f"{name}.json").write_text(json.dumps(dash, indent=2) + "\n")


if __name__ == "__main__":
    main()
