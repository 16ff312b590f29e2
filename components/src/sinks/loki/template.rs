//! Label values with placeholders (`{{ source }}`, `{{ file }}`, `{{ label.NAME }}`), filled
//! in per event.

use std::collections::BTreeMap;

use crate::event::LogEvent;

/// A label value of the `labels` setting: text with `{{ source }}`, `{{ file }}` and
/// `{{ label.NAME }}` placeholders, filled in per event.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelTemplate(Vec<TemplatePart>);

#[derive(Clone, Debug, PartialEq)]
enum TemplatePart {
    Text(String),
    Source,
    File,
    Label(String),
}

impl LabelTemplate {
    /// Parses a value; an unknown or unclosed placeholder is an error naming it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = value;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(TemplatePart::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {value:?}"))?;
            let name = after[..end].trim();
            parts.push(match name {
                "source" => TemplatePart::Source,
                "file" => TemplatePart::File,
                _ => match name.strip_prefix("label.") {
                    Some(label) if !label.is_empty() => TemplatePart::Label(label.to_string()),
                    _ => {
                        return Err(format!(
                            "unknown placeholder {{{{ {name} }}}} in {value:?}: use source, file or label.NAME"
                        ));
                    }
                },
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        Ok(Self(parts))
    }

    /// Whether the value is non-empty for every event that carries `labels` (and, with
    /// `has_file`, names its file).
    pub fn always_renders(&self, labels: &BTreeMap<String, String>, has_file: bool) -> bool {
        self.0.iter().any(|part| match part {
            TemplatePart::Text(text) => !text.is_empty(),
            // Component names are never empty.
            TemplatePart::Source => true,
            TemplatePart::File => has_file,
            TemplatePart::Label(name) => labels.get(name).is_some_and(|v| !v.is_empty()),
        })
    }

    /// Whether the value reads the event's file (`{{ file }}`).
    pub fn reads_file(&self) -> bool {
        self.0.iter().any(|part| matches!(part, TemplatePart::File))
    }

    /// Whether the value reads the event's source (`{{ source }}`).
    pub fn reads_source(&self) -> bool {
        self.0
            .iter()
            .any(|part| matches!(part, TemplatePart::Source))
    }

    /// The value when it is the same for every event (plain text, no placeholder).
    pub fn constant(&self) -> Option<String> {
        self.0
            .iter()
            .map(|part| match part {
                TemplatePart::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The value for one event (empty when every placeholder is missing and there is no text).
    pub fn render(&self, event: &LogEvent) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                TemplatePart::Text(text) => out.push_str(text),
                TemplatePart::Source => out.push_str(&event.source),
                TemplatePart::File => out.push_str(event.file.as_deref().unwrap_or("")),
                TemplatePart::Label(name) => out.push_str(event.labels.get(name).unwrap_or("")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    #[test]
    fn label_templates_fill_in_source_file_and_labels() {
        let event = LogEvent {
            timestamp_ns: 0,
            observed_ns: 0,
            line: Bytes::new(),
            labels: crate::event::Labels::new([("app", "api")]),
            metadata: Vec::new(),
            source: "nginx".into(),
            file: Some("/var/log/nginx/access.log".into()),
            replays: 0,
            fields: Default::default(),
        };
        let t = LabelTemplate::parse("{{ source }}-{{label.app}}:{{ file }}").unwrap();
        assert_eq!(t.render(&event), "nginx-api:/var/log/nginx/access.log");
        assert_eq!(
            LabelTemplate::parse("plain").unwrap().render(&event),
            "plain"
        );
        assert_eq!(
            LabelTemplate::parse("{{ label.missing }}")
                .unwrap()
                .render(&event),
            ""
        );
        assert_eq!(
            LabelTemplate::parse("plain").unwrap().constant().as_deref(),
            Some("plain")
        );
        assert_eq!(
            LabelTemplate::parse("a-{{ file }}").unwrap().constant(),
            None
        );
        assert!(
            LabelTemplate::parse("{{ nope }}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(
            LabelTemplate::parse("{{ source")
                .unwrap_err()
                .contains("unclosed")
        );
    }
}
