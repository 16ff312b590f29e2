//! What the docker source knows of a container, which containers it follows (include and
//! exclude globs by name, image and label; never its own container), and the stream labels of
//! its lines (templates over the container's name, short id, image, compose project and
//! service, its labels, and the output stream).
//!
//! Guarantees:
//! - A container is followed when it matches every include list that is set (any pattern of
//!   a list) and no exclude pattern; the shipper's own container never is.
//! - Labels are rendered once per container and stream (not per line); a label whose value
//!   renders empty is left out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::frames::Stream;
use crate::event::Labels;

/// A container as the source knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The full id.
    pub id: String,
    /// Its name, without Docker's leading `/`.
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// Started with a TTY: one raw stream, no stdout/stderr framing.
    pub tty: bool,
    pub running: bool,
}

impl ContainerInfo {
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// A `labels` value: text with `{{ name }}`, `{{ id }}`, `{{ image }}`, `{{ stream }}`,
/// `{{ compose_project }}`, `{{ compose_service }}` and `{{ label.KEY }}` placeholders.
#[derive(Clone, Debug, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Name,
    Id,
    Image,
    Stream,
    Label(String),
}

const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

impl Template {
    /// Parses a value; an unknown or unclosed placeholder is an error naming it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = value;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {value:?}"))?;
            let name = after[..end].trim();
            parts.push(match name {
                "name" => Part::Name,
                "id" => Part::Id,
                "image" => Part::Image,
                "stream" => Part::Stream,
                "compose_project" => Part::Label(COMPOSE_PROJECT.to_string()),
                "compose_service" => Part::Label(COMPOSE_SERVICE.to_string()),
                _ => match name.strip_prefix("label.") {
                    Some(label) if !label.is_empty() => Part::Label(label.to_string()),
                    _ => {
                        return Err(format!(
                            "unknown placeholder {{{{ {name} }}}} in {value:?}: use name, id, image, stream, compose_project, compose_service or label.KEY"
                        ));
                    }
                },
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self(parts))
    }

    /// Whether the value is non-empty for every container (text, name, id, stream).
    pub fn always_renders(&self) -> bool {
        self.0.iter().any(|part| match part {
            Part::Text(text) => !text.is_empty(),
            Part::Name | Part::Id | Part::Stream => true,
            Part::Image | Part::Label(_) => false,
        })
    }

    fn render(&self, container: &ContainerInfo, stream: Stream) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Name => out.push_str(&container.name),
                Part::Id => out.push_str(container.short_id()),
                Part::Image => out.push_str(&container.image),
                Part::Stream => out.push_str(stream.as_str()),
                Part::Label(key) => {
                    out.push_str(container.labels.get(key).map_or("", String::as_str))
                }
            }
        }
        out
    }
}

/// The `labels` setting, parsed.
#[derive(Clone, Debug, Default)]
pub struct LabelRules(Vec<(Arc<str>, Template)>);

impl LabelRules {
    /// Parses every value; the errors name the label.
    pub fn parse(labels: &BTreeMap<String, String>) -> Result<Self, Vec<(String, String)>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (name, value) in labels {
            match Template::parse(value) {
                Ok(template) => rules.push((Arc::from(name.as_str()), template)),
                Err(error) => errors.push((name.clone(), error)),
            }
        }
        if errors.is_empty() {
            Ok(Self(rules))
        } else {
            Err(errors)
        }
    }

    /// The label sets of a container's lines: stdout's and stderr's.
    pub fn render(&self, container: &ContainerInfo) -> [Labels; 2] {
        [Stream::Stdout, Stream::Stderr].map(|stream| {
            Labels::new(self.0.iter().filter_map(|(name, template)| {
                let value = template.render(container, stream);
                (!value.is_empty()).then(|| (name.clone(), Arc::<str>::from(value)))
            }))
        })
    }
}

/// One `key` or `key=glob` of `include_labels` / `exclude_labels`.
#[derive(Clone, Debug)]
struct LabelPattern {
    key: String,
    value: Option<glob::Pattern>,
}

impl LabelPattern {
    fn matches(&self, labels: &HashMap<String, String>) -> bool {
        labels
            .get(&self.key)
            .is_some_and(|value| self.value.as_ref().is_none_or(|p| p.matches(value)))
    }
}

/// Which containers are followed.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    include_names: Vec<glob::Pattern>,
    exclude_names: Vec<glob::Pattern>,
    include_images: Vec<glob::Pattern>,
    exclude_images: Vec<glob::Pattern>,
    include_labels: Vec<LabelPattern>,
    exclude_labels: Vec<LabelPattern>,
    /// The shipper's own container id (full or a prefix), when it runs in one.
    own_id: Option<String>,
}

/// Parses glob lists; errors as (key, message).
fn globs(key: &str, patterns: &[String], errors: &mut Vec<(String, String)>) -> Vec<glob::Pattern> {
    patterns
        .iter()
        .filter_map(|p| match glob::Pattern::new(p) {
            Ok(pattern) => Some(pattern),
            Err(error) => {
                errors.push((key.to_string(), format!("invalid glob {p:?}: {error}")));
                None
            }
        })
        .collect()
}

fn label_globs(
    key: &str,
    patterns: &[String],
    errors: &mut Vec<(String, String)>,
) -> Vec<LabelPattern> {
    patterns
        .iter()
        .filter_map(|p| {
            let (label, value) = match p.split_once('=') {
                Some((label, value)) => (label, Some(value)),
                None => (p.as_str(), None),
            };
            if label.is_empty() {
                errors.push((key.to_string(), format!("{p:?} names no label")));
                return None;
            }
            let value = match value.map(glob::Pattern::new) {
                None => None,
                Some(Ok(pattern)) => Some(pattern),
                Some(Err(error)) => {
                    errors.push((key.to_string(), format!("invalid glob in {p:?}: {error}")));
                    return None;
                }
            };
            Some(LabelPattern {
                key: label.to_string(),
                value,
            })
        })
        .collect()
}

impl Selector {
    /// Builds the selector from the configuration's lists; errors as (key, message).
    pub fn new(config: &super::DockerSourceConfig) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let selector = Self {
            include_names: globs("include_names", &config.include_names, &mut errors),
            exclude_names: globs("exclude_names", &config.exclude_names, &mut errors),
            include_images: globs("include_images", &config.include_images, &mut errors),
            exclude_images: globs("exclude_images", &config.exclude_images, &mut errors),
            include_labels: label_globs("include_labels", &config.include_labels, &mut errors),
            exclude_labels: label_globs("exclude_labels", &config.exclude_labels, &mut errors),
            own_id: if config.exclude_self {
                own_container_id()
            } else {
                None
            },
        };
        if errors.is_empty() {
            Ok(selector)
        } else {
            Err(errors)
        }
    }

    /// Whether `container` is followed.
    pub fn selects(&self, container: &ContainerInfo) -> bool {
        if let Some(own) = &self.own_id
            && (container.id.starts_with(own.as_str()) || own.starts_with(&container.id))
        {
            return false;
        }
        let any =
            |patterns: &[glob::Pattern], value: &str| patterns.iter().any(|p| p.matches(value));
        let included = (self.include_names.is_empty() || any(&self.include_names, &container.name))
            && (self.include_images.is_empty() || any(&self.include_images, &container.image))
            && (self.include_labels.is_empty()
                || self
                    .include_labels
                    .iter()
                    .any(|p| p.matches(&container.labels)));
        included
            && !any(&self.exclude_names, &container.name)
            && !any(&self.exclude_images, &container.image)
            && !self
                .exclude_labels
                .iter()
                .any(|p| p.matches(&container.labels))
    }
}

/// The id of the container this process runs in, if any: from the cgroup path (cgroup v1),
/// the mount table (`/etc/hostname` mounted from `/var/lib/docker/containers/<id>/`, cgroup
/// v2), or a `HOSTNAME` that is
/// a 12-digit hex id (Docker's default host name).
pub fn own_container_id() -> Option<String> {
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Ok(cgroup) = std::fs::read_to_string("/proc/self/cgroup") {
        for segment in cgroup.split(['/', '\n', '-', '.']) {
            if hex64(segment) {
                return Some(segment.to_string());
            }
        }
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in mounts.lines() {
            // Only the files Docker mounts into a container; on a host the table may list
            // other containers' mounts (their shm) too.
            let mount_point = line.split(' ').nth(4).unwrap_or("");
            if !matches!(
                mount_point,
                "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf"
            ) {
                continue;
            }
            if let Some(at) = line.find("/containers/") {
                let rest = &line[at + "/containers/".len()..];
                if let Some(id) = rest.split('/').next()
                    && hex64(id)
                {
                    return Some(id.to_string());
                }
            }
        }
    }
    std::env::var("HOSTNAME").ok().filter(|h| {
        h.len() == 12
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> ContainerInfo {
        ContainerInfo {
            id: "3f1c2d4e5a6b7c8d9e0f3f1c2d4e5a6b7c8d9e0f3f1c2d4e5a6b7c8d9e0f1234".into(),
            name: "web-1".into(),
            image: "nginx:1.27".into(),
            labels: HashMap::from([
                (COMPOSE_PROJECT.to_string(), "shop".to_string()),
                ("team".to_string(), "payments".to_string()),
            ]),
            tty: false,
            running: true,
        }
    }

    #[test]
    fn labels_render_per_stream_and_empty_ones_are_left_out() {
        let rules = LabelRules::parse(&BTreeMap::from([
            ("container".to_string(), "{{ name }}".to_string()),
            ("id".to_string(), "{{id}}".to_string()),
            ("stream".to_string(), "{{ stream }}".to_string()),
            ("project".to_string(), "{{ compose_project }}".to_string()),
            ("service".to_string(), "{{ compose_service }}".to_string()),
            ("team".to_string(), "t-{{ label.team }}".to_string()),
        ]))
        .unwrap();
        let [out, err] = rules.render(&container());
        assert_eq!(out.get("container"), Some("web-1"));
        assert_eq!(out.get("id"), Some("3f1c2d4e5a6b"));
        assert_eq!(out.get("stream"), Some("stdout"));
        assert_eq!(err.get("stream"), Some("stderr"));
        assert_eq!(out.get("project"), Some("shop"));
        assert_eq!(out.get("service"), None);
        assert_eq!(out.get("team"), Some("t-payments"));
        assert!(Template::parse("{{ nope }}").is_err());
        assert!(Template::parse("{{ name").is_err());
    }

    #[test]
    fn include_and_exclude_by_name_image_and_label() {
        let mut config = super::super::DockerSourceConfig {
            exclude_self: false,
            ..Default::default()
        };
        let c = container();
        assert!(Selector::new(&config).unwrap().selects(&c));
        config.include_names = vec!["web-*".into()];
        config.include_images = vec!["nginx:*".into()];
        config.include_labels = vec!["team=pay*".into()];
        assert!(Selector::new(&config).unwrap().selects(&c));
        config.exclude_labels = vec![COMPOSE_PROJECT.to_string()];
        assert!(!Selector::new(&config).unwrap().selects(&c));
        config.exclude_labels.clear();
        config.include_images = vec!["redis*".into()];
        assert!(!Selector::new(&config).unwrap().selects(&c));
        config.include_images = vec!["[".into()];
        assert!(Selector::new(&config).is_err());
        let mut own = Selector::new(&super::super::DockerSourceConfig {
            exclude_self: false,
            ..Default::default()
        })
        .unwrap();
        own.own_id = Some(c.short_id().to_string());
        assert!(!own.selects(&c));
    }
}
