//! The reference documents are checked against the code, so neither drifts from the other.

use log_capturer::components::config::struct_fields;
use log_capturer::components::dispatcher::DispatcherConfig;
use log_capturer::components::dlq::DlqConfig;
use log_capturer::components::registry::{SINKS, SOURCES, TRANSFORMS, type_names};
use log_capturer::components::sinks::console::ConsoleConfig;
use log_capturer::components::sinks::file::FileSinkConfig;
use log_capturer::components::sinks::loki::timestamps::TimestampConfig;
use log_capturer::components::sinks::loki::{LokiAuth, LokiSinkConfig};
use log_capturer::components::sources::docker::DockerSourceConfig;
use log_capturer::components::sources::file::FileSourceConfig;
use log_capturer::components::sources::generator::GeneratorConfig;
use log_capturer::components::transforms::dedup::DedupConfig;
use log_capturer::components::transforms::filter::FilterConfig;
use log_capturer::components::transforms::json::JsonParserConfig;
use log_capturer::components::transforms::labels::LabelsConfig;
use log_capturer::components::transforms::logfmt::LogfmtParserConfig;
use log_capturer::components::transforms::multiline::MultilineConfig;
use log_capturer::components::transforms::regex_parser::RegexParserConfig;
use log_capturer::components::transforms::route::RouteConfig;
use log_capturer::components::transforms::throttle::ThrottleConfig;
use log_capturer::components::transforms::timestamp::TimestampConfig as TimestampStageConfig;
use log_capturer::config::telemetry::{OtlpConfig, TelemetryConfig};
use log_capturer::config::{ApiConfig, LogConfig, RootConfig};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn configuration_reference_documents_every_key_and_type() {
    let doc = read("docs/configuration.md");
    let sections: &[(&str, &[&str])] = &[
        ("top level", struct_fields::<RootConfig>()),
        ("api", struct_fields::<ApiConfig>()),
        ("log", struct_fields::<LogConfig>()),
        ("telemetry", struct_fields::<TelemetryConfig>()),
        ("telemetry.otlp", struct_fields::<OtlpConfig>()),
        ("dispatcher", struct_fields::<DispatcherConfig>()),
        ("generator", struct_fields::<GeneratorConfig>()),
        ("file source", struct_fields::<FileSourceConfig>()),
        ("docker source", struct_fields::<DockerSourceConfig>()),
        ("filter", struct_fields::<FilterConfig>()),
        ("dedup", struct_fields::<DedupConfig>()),
        ("json", struct_fields::<JsonParserConfig>()),
        ("logfmt", struct_fields::<LogfmtParserConfig>()),
        ("regex", struct_fields::<RegexParserConfig>()),
        ("timestamp stage", struct_fields::<TimestampStageConfig>()),
        ("labels", struct_fields::<LabelsConfig>()),
        ("multiline", struct_fields::<MultilineConfig>()),
        ("throttle", struct_fields::<ThrottleConfig>()),
        ("route", struct_fields::<RouteConfig>()),
        ("file", struct_fields::<FileSinkConfig>()),
        ("loki", struct_fields::<LokiSinkConfig>()),
        ("loki timestamps", struct_fields::<TimestampConfig>()),
        ("loki auth", struct_fields::<LokiAuth>()),
        ("dlq", struct_fields::<DlqConfig>()),
        ("console", struct_fields::<ConsoleConfig>()),
    ];
    let [test_entry, test_input, test_expect] = log_capturer::config::pipeline_tests::test_keys();
    let sections = [
        sections,
        &[
            ("tests entry", test_entry),
            ("tests input", test_input),
            ("tests expect", test_expect),
        ],
    ]
    .concat();
    let mut missing = Vec::new();
    for (section, fields) in &sections {
        assert!(!fields.is_empty(), "{section} has no fields?");
        for field in *fields {
            if !doc.contains(&format!("| `{field}` |")) {
                missing.push(format!("{section}.{field}"));
            }
        }
    }
    let types = [
        type_names(SOURCES),
        type_names(TRANSFORMS),
        type_names(SINKS),
    ];
    for type_name in types.iter().flatten() {
        if !doc.contains(&format!("### `{type_name}`")) {
            missing.push(format!("type {type_name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn metrics_reference_lists_every_metric_with_its_type() {
    let doc = read("docs/metrics.md");
    let all = log_capturer::telemetry::all_metrics();
    assert!(all.len() > 40, "{} metrics?", all.len());
    let missing: Vec<String> = all
        .iter()
        .map(|def| format!("| `{}` | {} |", def.exported_name(), def.kind.as_str()))
        .filter(|row| !doc.contains(row.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/metrics.md as a row: {missing:#?}"
    );
    let mut names: Vec<&str> = all.iter().map(|def| def.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a metric is declared twice");
}
