//! Declared services: `[services.NAME]` tables beside `[services.sshd]`.
//! `Services` is read by hand (a map whose `sshd` key has its own type)
//! rather than with `#[serde(flatten)]`, which would buffer the values and
//! lose the spans that errors point at.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::{Services, Sshd};

/// A declared service: a command Shepherd runs and respawns, and how the
/// agent knows it is ready.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Service {
    /// The program (absolute) and its arguments.
    pub command: Spanned<Vec<Spanned<String>>>,
    /// Services started before this one: `network`, `sshd` or declared ones.
    #[serde(default)]
    pub requirement: Vec<Spanned<String>>,
    /// The user it runs as (default root).
    pub user: Option<Spanned<String>>,
    /// The group it runs as (default the user's).
    pub group: Option<Spanned<String>>,
    /// Environment beyond the base `PATH`.
    #[serde(default)]
    pub environment: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Working directory (absolute).
    pub directory: Option<Spanned<String>>,
    /// Whether Shepherd restarts it when it exits (default true).
    #[serde(default = "default_true")]
    pub respawn: bool,
    /// Where its output goes (default `/var/log/NAME.log`).
    pub log_file: Option<Spanned<String>>,
    /// Its readiness check; without one, running is ready.
    pub ready: Option<Spanned<Ready>>,
}

/// A readiness check as declared: exactly one of `tcp`, `http` and
/// `command` (checked in `validate::services`), and a timeout.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Ready {
    /// A TCP port of 127.0.0.1 that accepts a connection.
    pub tcp: Option<Spanned<i64>>,
    /// An `http://127.0.0.1:PORT/PATH` URL that answers 2xx.
    pub http: Option<Spanned<String>>,
    /// A command that exits 0.
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    /// Seconds the agent waits for it (1 to 3600, default 30).
    #[serde(default = "default_ready_timeout")]
    pub timeout: Spanned<i64>,
}

fn default_true() -> bool {
    true
}

fn default_ready_timeout() -> Spanned<i64> {
    Spanned::new(0..0, 30)
}

impl<'de> Deserialize<'de> for Services {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Services;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of services")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Services, A::Error> {
                let mut s = Services::default();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    if k.get_ref() == "sshd" {
                        if s.sshd.is_some() {
                            return Err(serde::de::Error::duplicate_field("sshd"));
                        }
                        s.sshd = Some(m.next_value::<Sshd>()?);
                    } else {
                        let v = m.next_value::<Service>()?;
                        s.declared.insert(k, v);
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}
