//! The generation records, `/frx/var/fruix/generations.json`: for each
//! generation the switch made, its system, when it was made and how its
//! switch ended. The profile links (`/frx/var/profiles/system-N`) say which
//! generations exist; these records add what a link cannot hold. A
//! generation without a record (the first boot's, an older agent's) is
//! committed. Written by the agent's switch under the switch lock
//! ([`Records::to_json`]), read by `fruix-agent generations` and, as its
//! `--json` output, by `fruix system generations` on the host.

use serde::{Deserialize, Serialize};

use crate::FormatError;

/// Where the records are kept.
pub const GENERATIONS_PATH: &str = "/frx/var/fruix/generations.json";

/// How a generation's switch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenState {
    /// Being tried by a switch.
    Trying,
    /// Ready: it stayed.
    Committed,
    /// Not ready: the switch went back.
    RolledBack,
    /// Made by `switch --boot`: tried at the next boot, not yet booted.
    BootPending,
    /// Tried at a boot that failed (or never reported); the boot fell
    /// back to an older generation.
    BootFailed,
}

impl GenState {
    /// The state's name, as JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GenState::Trying => "trying",
            GenState::Committed => "committed",
            GenState::RolledBack => "rolled-back",
            GenState::BootPending => "boot-pending",
            GenState::BootFailed => "boot-failed",
        }
    }
}

/// One generation's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its number.
    pub number: u64,
    /// Its system item, as a guest path.
    pub system: String,
    /// When the switch made it, seconds since the epoch.
    pub created: u64,
    /// How its switch ended.
    pub state: GenState,
}

/// All records, by number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// The records, sorted by number.
    pub generations: Vec<Record>,
}

impl Records {
    /// The records' bytes: pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Reads records; `what` names them in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Records, FormatError> {
        serde_json::from_slice(bytes).map_err(|e| FormatError::Line {
            what: what.to_owned(),
            line: e.line(),
            message: e.to_string(),
        })
    }

    /// Sets (or adds) the record of generation `number`.
    pub fn set(&mut self, r: Record) {
        match self.generations.iter_mut().find(|x| x.number == r.number) {
            Some(x) => *x = r,
            None => {
                self.generations.push(r);
                self.generations.sort_by_key(|x| x.number);
            }
        }
    }

    /// The record of generation `number`.
    pub fn get(&self, number: u64) -> Option<&Record> {
        self.generations.iter().find(|x| x.number == number)
    }
}

/// A generation as `fruix-agent generations --json` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Its number.
    pub number: u64,
    /// Its system item, as a guest path.
    pub system: String,
    /// When it was made, seconds since the epoch.
    pub created: u64,
    /// The same, as RFC 3339 UTC.
    pub date: String,
    /// How its switch ended.
    pub state: GenState,
    /// The current generation.
    pub current: bool,
    /// The system the guest booted.
    pub booted: bool,
}

/// `secs` since the epoch as RFC 3339 UTC (`2026-12-02T08:40:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm), for years from 1970.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_set_replaces_by_number() {
        let mut r = Records::default();
        r.set(Record {
            number: 2,
            system: "/frx/store/b-system-h".into(),
            created: 20,
            state: GenState::Trying,
        });
        r.set(Record {
            number: 1,
            system: "/frx/store/a-system-h".into(),
            created: 10,
            state: GenState::Committed,
        });
        r.set(Record {
            number: 2,
            system: "/frx/store/b-system-h".into(),
            created: 20,
            state: GenState::RolledBack,
        });
        let nums: Vec<u64> = r.generations.iter().map(|g| g.number).collect();
        assert_eq!(nums, [1, 2]);
        assert_eq!(r.get(2).map(|g| g.state), Some(GenState::RolledBack));
        let back = Records::parse(&r.to_json(), "generations.json").unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["generations"][1]["state"], "rolled-back");
    }

    #[test]
    fn broken_records_name_their_file_and_line() {
        let e = Records::parse(b"{\n\"generations\": 7}", "/frx/var/fruix/generations.json")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/frx/var/fruix/generations.json: line 2: invalid type: integer `7`, expected a sequence at line 2 column 16"
        );
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_200_000), "2026-12-02T08:26:40Z");
    }
}
