//! Secrets in the configuration: passwords and tokens that must never be shown.
//!
//! A [`Secret`] is written in the configuration as a plain string (the value itself) or as a map
//! with exactly one of `value` (the value), `env` (the name of an environment variable holding it)
//! or `file` (a file holding it; one trailing newline is removed).
//!
//! Guarantees:
//! - The value cannot leave through the type: `Serialize` writes `"<redacted>"` in place of an
//!   inline value, and `Debug` likewise. An `env` variable's name and a `file`'s path are shown
//!   (`{"env": "NAME"}`, `{"file": "/path"}`): they say where the secret is, not what it is. So any
//!   configuration printed through its types (`GET /config`, `validate --print`) is redacted
//!   because of the types, whatever the keys are called.
//! - `Deserialize` errors never contain the value: a secret of the wrong type (a number that is
//!   not an integer, a boolean, a list), a map with two forms or an unknown key is reported in
//!   words of its own, never with serde's `invalid type: string "..."`.
//! - A resolved secret, [`SecretString`], has no `Display`, no `Serialize`, and a redacted
//!   `Debug`; the text is reached only through [`SecretString::expose`].
//!
//! `Serialize` is for showing a configuration only: what it writes does not read back as the
//! same secret.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// What an inline secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// A secret given inline, from an environment variable, or from a file.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Form);

#[derive(Clone, PartialEq, Eq)]
enum Form {
    Value(String),
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// A secret given inline.
    pub fn value(value: impl Into<String>) -> Self {
        Self(Form::Value(value.into()))
    }

    /// A secret read from the environment variable `name`.
    pub fn env(name: impl Into<String>) -> Self {
        Self(Form::Env(name.into()))
    }

    /// A secret read from the file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self(Form::File(path.into()))
    }

    /// The environment variable it is read from, if that is its form.
    pub fn env_var(&self) -> Option<&str> {
        match &self.0 {
            Form::Env(name) => Some(name),
            _ => None,
        }
    }

    /// The file it is read from, if that is its form.
    pub fn file_path(&self) -> Option<&Path> {
        match &self.0 {
            Form::File(path) => Some(path),
            _ => None,
        }
    }

    /// Reads the value: inline, from the environment or from the file (one trailing `\n` or
    /// `\r\n` removed). An empty value is an error: it is always a mistake, and an empty
    /// password or token would silently mean "no authentication".
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        let text = match &self.0 {
            Form::Value(value) => value.clone(),
            Form::Env(name) => match std::env::var(name) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::EnvNotSet { name: name.clone() });
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EnvNotUnicode { name: name.clone() });
                }
            },
            Form::File(path) => match std::fs::read_to_string(path) {
                Ok(mut text) => {
                    if text.ends_with('\n') {
                        text.pop();
                        if text.ends_with('\r') {
                            text.pop();
                        }
                    }
                    text
                }
                Err(error) => {
                    return Err(SecretError::File {
                        path: path.clone(),
                        error,
                    });
                }
            },
        };
        if text.is_empty() {
            return Err(SecretError::Empty {
                from: self.describe(),
            });
        }
        Ok(SecretString(text))
    }

    /// Where the secret comes from, in words that never contain it.
    fn describe(&self) -> String {
        match &self.0 {
            Form::Value(_) => "the inline value".to_string(),
            Form::Env(name) => format!("environment variable {name}"),
            Form::File(path) => format!("file {}", path.display()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Form::Value(_) => write!(f, "Secret({REDACTED})"),
            Form::Env(name) => f.debug_struct("Secret").field("env", name).finish(),
            Form::File(path) => f.debug_struct("Secret").field("file", path).finish(),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Form::Value(_) => serializer.serialize_str(REDACTED),
            Form::Env(name) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("env", name)?;
                map.end()
            }
            Form::File(path) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("file", path)?;
                map.end()
            }
        }
    }
}

const FORMS: &[&str] = &["value", "env", "file"];

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret: a string, or a map with one of `value`, `env` or `file`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::value(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::value(v))
    }

    // YAML and the environment read `123456` as a number: an integer is taken as its digits.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
        Ok(Secret::value(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
        Ok(Secret::value(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(not_text())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(not_text())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(de::Error::custom(
            "a secret must be a string or a map with one of `value`, `env` or `file`, not a list",
        ))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut found: Option<(String, String)> = None;
        while let Some(key) = map.next_key::<String>()? {
            if !FORMS.contains(&key.as_str()) {
                // The key is not echoed: `password: {hunter2}` makes the secret a key.
                let hint = crate::config::did_you_mean(&key, FORMS)
                    .map(|best| format!(" (did you mean `{best}`?)"))
                    .unwrap_or_default();
                return Err(de::Error::custom(format!(
                    "unknown key in a secret{hint}; give one of `value`, `env` or `file`"
                )));
            }
            let SecretText(text) = map.next_value()?;
            if let Some((first, _)) = &found {
                return Err(de::Error::custom(format!(
                    "a secret takes exactly one of `value`, `env` or `file`, but both `{first}` and `{key}` are given"
                )));
            }
            found = Some((key, text));
        }
        match found {
            Some((key, text)) => match key.as_str() {
                "value" => Ok(Secret::value(text)),
                "env" => Ok(Secret::env(text)),
                _ => Ok(Secret::file(text)),
            },
            None => Err(de::Error::custom(
                "an empty secret: give one of `value`, `env` or `file`",
            )),
        }
    }
}

fn not_text<E: de::Error>() -> E {
    E::custom("a secret must be a string; quote it (\"...\")")
}

/// The text of one form of a secret; its errors never contain what was written.
struct SecretText(String);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'v> Visitor<'v> for TextVisitor {
            type Value = SecretText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretText, E> {
                Ok(SecretText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SecretText, E> {
                Ok(SecretText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SecretText, E> {
                Ok(SecretText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretText, E> {
                Err(not_text())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretText, E> {
                Err(not_text())
            }
            fn visit_unit<E: de::Error>(self) -> Result<SecretText, E> {
                Err(E::custom(
                    "a secret's `value`, `env` or `file` must not be empty",
                ))
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, _: A) -> Result<SecretText, A::Error> {
                Err(not_text())
            }
            fn visit_map<A: MapAccess<'v>>(self, _: A) -> Result<SecretText, A::Error> {
                Err(not_text())
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A resolved secret. No `Display`, no `Serialize`, a redacted `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// The secret's text, for the one place that needs it (a header, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        if secret.len() != candidate.len() {
            return false;
        }
        secret
            .iter()
            .zip(candidate)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString({REDACTED})")
    }
}

/// Why a secret could not be read; never contains the secret.
#[derive(Debug)]
pub enum SecretError {
    /// The environment variable is not set.
    EnvNotSet { name: String },
    /// The environment variable is not valid UTF-8.
    EnvNotUnicode { name: String },
    /// The file cannot be read.
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The value is empty.
    Empty { from: String },
}

impl SecretError {
    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::EnvNotSet { .. } => {
                "set the variable in log-capturer's environment, or give the secret as {file: PATH}"
            }
            Self::EnvNotUnicode { .. } => "the variable must hold UTF-8 text",
            Self::File { .. } => {
                "check the path and that the user running log-capturer may read the file"
            }
            Self::Empty { .. } => "give the secret a value, or remove the key",
        }
    }
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EnvNotSet { name } => write!(f, "environment variable {name} is not set"),
            Self::EnvNotUnicode { name } => {
                write!(f, "environment variable {name} is not valid UTF-8")
            }
            Self::File { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            Self::Empty { from } => write!(f, "the secret from {from} is empty"),
        }
    }
}

impl std::error::Error for SecretError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "hunter2-do-not-show";

    fn parse(value: serde_json::Value) -> Result<Secret, String> {
        serde_json::from_value::<Secret>(value).map_err(|e| e.to_string())
    }

    #[test]
    fn every_form_reads_and_none_prints_an_inline_value() {
        for (input, shown) in [
            (json!(SECRET), json!(REDACTED)),
            (json!({"value": SECRET}), json!(REDACTED)),
            (json!({"env": "SOME_VAR"}), json!({"env": "SOME_VAR"})),
            (
                json!({"file": "/run/secrets/x"}),
                json!({"file": "/run/secrets/x"}),
            ),
        ] {
            let secret = parse(input.clone()).unwrap();
            assert_eq!(serde_json::to_value(&secret).unwrap(), shown, "{input}");
            let debug = format!("{secret:?}");
            assert!(!debug.contains(SECRET), "{debug}");
        }
        assert_eq!(
            parse(json!(SECRET)).unwrap().resolve().unwrap().expose(),
            SECRET
        );
        assert_eq!(
            parse(json!(123456)).unwrap().resolve().unwrap().expose(),
            "123456"
        );
    }

    #[test]
    fn errors_never_contain_the_value() {
        for (input, expected) in [
            (json!({"value": SECRET, "env": "X"}), "exactly one of"),
            (json!({"valeu": SECRET}), "did you mean `value`?"),
            (json!({SECRET: null}), "unknown key in a secret"),
            (json!({"value": [SECRET]}), "must be a string"),
            (json!([SECRET]), "not a list"),
            (json!({}), "an empty secret"),
            (json!(1.5), "must be a string"),
        ] {
            let error = parse(input.clone()).unwrap_err();
            assert!(error.contains(expected), "{input}: {error}");
            assert!(!error.contains(SECRET), "{error}");
        }
    }

    #[test]
    fn env_and_file_forms_resolve_or_say_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{SECRET}\r\n")).unwrap();
        assert_eq!(Secret::file(&path).resolve().unwrap().expose(), SECRET);

        let missing = Secret::file(dir.path().join("nope")).resolve().unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
        let unset = Secret::env("LOG_CAPTURER_TEST_SURELY_UNSET_SECRET")
            .resolve()
            .unwrap_err();
        assert_eq!(
            unset.to_string(),
            "environment variable LOG_CAPTURER_TEST_SURELY_UNSET_SECRET is not set"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Secret::file(&path).resolve(),
            Err(SecretError::Empty { .. })
        ));
    }

    #[test]
    fn resolved_secret_compares_and_hides() {
        let resolved = Secret::value(SECRET).resolve().unwrap();
        assert!(resolved.matches(SECRET.as_bytes()));
        assert!(!resolved.matches(b"hunter2"));
        assert!(!format!("{resolved:?}").contains(SECRET));
    }
}
